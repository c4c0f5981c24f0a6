"""Faults in kernels and corpora: real crashes, real hangs, real concurrent writers, real
SIGKILLs, and a corpus crafted to run code."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from kfuzz.execute.executor import Job
from kfuzz.execute.isolation import IsolatedExecutor
from kfuzz.store.corpus import CorpusStore

ROOT = Path(__file__).resolve().parents[1]
CASE = {"shape": [2, 8], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 1.0}, "seed": 1}
KFUZZ = [sys.executable, "-m", "kfuzz.cli"]


@pytest.fixture(scope="module")
def isolated():
    ex = IsolatedExecutor(case_timeout=3)
    yield ex
    ex.close()


def _job(kernel, **case):
    return Job("ops.softmax", f"tests.faulty_kernels:{kernel}", "fp64", {**CASE, **case})


def test_segfault_becomes_a_crash_outcome_and_the_worker_is_replaced(isolated):
    crash = isolated.evaluate([_job("segfault_wide", shape=[1, 60])])[0]
    assert crash.status == "crash"
    assert crash.error.startswith("Crash: worker killed by SIGSEGV")
    assert crash.buckets() == {"crash:SIGSEGV"}
    # The signal travels as data, not only in the text.
    assert (crash.signal, crash.exit_code, crash.error_type) == ("SIGSEGV", None, None)
    after = isolated.evaluate([_job("segfault_wide", shape=[1, 10])])[0]
    assert after.status == "pass"


def test_abort_and_hang(isolated):
    aborted = isolated.evaluate([_job("crash_hang", shape=[1, 13])])[0]
    assert aborted.status == "crash" and "SIGABRT" in aborted.error
    start = time.monotonic()
    hung = isolated.evaluate([_job("crash_hang", shape=[1, 7])])[0]
    assert hung.status == "timeout" and hung.error == "Timeout: no result after 3s"
    assert hung.timeout == 3 and hung.buckets() == {"timeout:"}
    assert aborted.signal == "SIGABRT"
    assert time.monotonic() - start < 60  # the 3 s limit ended it, not the test's timeout
    assert isolated.evaluate([_job("crash_hang", shape=[1, 5])])[0].status in ("pass", "fail")


def test_kernel_prints_do_not_corrupt_the_worker(isolated):
    assert isolated.evaluate([_job("prints_to_stdout")])[0].status == "pass"


@pytest.mark.parametrize("kernel, kind", [("writes_input", "writes-input"),
                                          ("aliases_input", "writes-input")])
def test_contract_breaches_are_findings_of_their_own(isolated, kernel, kind):
    out = isolated.evaluate([_job(kernel)])[0]
    assert out.status == "contract" and out.buckets() == {f"contract:{kind}"}
    assert out.error_type == kind
    assert f"kernel 'tests.faulty_kernels:{kernel}'" in out.error


def test_identity_kernel_returning_its_input_is_an_alias_breach():
    from kfuzz.execute.executor import InProcessExecutor

    job = Job("ops.softmax", "tests.helpers_kernels:identity", "fp64", CASE)
    out = InProcessExecutor().evaluate([job])[0]
    assert out.status == "contract"
    assert out.error.startswith("Contract: aliases-input: kernel 'tests.helpers_kernels:identity' "
                                "returned output 'y' in the memory of its input 'x'")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.int64, torch.bool])
@pytest.mark.parametrize("n", [8, 1 << 13])  # both sides of where NumPy compares the bits
def test_an_input_counts_as_written_when_one_bit_changed(dtype, n):
    from kfuzz.execute.contract import same_bits

    x = (torch.arange(n) % 7 - 3).to(dtype)
    assert same_bits(x, x.clone())
    assert same_bits(x[::2], x.clone()[::2])  # strided views
    changed = x.clone()
    if dtype == torch.bool:
        changed[n // 2] = ~changed[n // 2]
    else:
        changed[n // 2] += 1
    assert not same_bits(x, changed)
    if dtype.is_floating_point:
        zero, nan = torch.zeros(n, dtype=dtype), torch.full((n,), math.nan, dtype=dtype)
        other_nan = nan.clone()
        other_nan.view(torch.int16 if dtype == torch.bfloat16 else torch.int32)[-1] += 1
        assert not same_bits(zero, -zero)  # a signed zero written
        assert same_bits(nan, nan.clone()) and not same_bits(nan, other_nan)  # payloads


@pytest.mark.parametrize("n", [8, 1 << 13])  # both sides of where NumPy compares the bits
def test_a_snapshot_names_the_input_written_or_resized(n):
    from kfuzz.execute.contract import Snapshot

    def inputs():
        return {"x": torch.arange(n, dtype=torch.float32), "w": torch.ones(n, dtype=torch.bfloat16)}

    kept = inputs()
    assert Snapshot(kept).changed() is None
    written = inputs()
    snap = Snapshot(written)
    written["w"][n - 1] = -0.0 if n > 8 else 2.0
    assert snap.changed() == "w"
    resized = inputs()
    snap = Snapshot(resized)
    resized["x"].resize_(n // 2)  # the same memory and values, less of them
    assert snap.changed() == "x"


def test_a_kernel_writing_into_a_large_input_breaches_its_contract():
    from kfuzz.execute.executor import InProcessExecutor

    out = InProcessExecutor().evaluate([_job("writes_input", shape=[64, 256])])[0]
    assert out.status == "contract" and out.error_type == "writes-input"


def test_isolated_worker_reports_configuration_errors_as_such(isolated):
    from kfuzz.errors import ContractViolation

    with pytest.raises(ContractViolation, match="returned output 'y' as torch.float32"):
        isolated.evaluate([Job("ops.softmax", "tests.helpers_kernels:softmax_wrong_dtype",
                               "fp64", CASE)])


@pytest.mark.slow
def test_campaign_over_crashing_hanging_kernel_runs_to_budget(kfuzz, db_path):
    res = kfuzz("run", "ops.softmax", "--kernel", "tests.faulty_kernels:crash_hang",
                "--isolate", "--case-timeout", "1", "--max-examples", "60", "--compare", "exact",
                "--shrink-seconds", "4", "--seed", "1", "--db", db_path, "--json")
    assert res.code == 1, res.err
    doc = res.json()
    assert doc["campaigns"][0]["examples"] == 60
    failures = {f["failure"] for f in doc["findings"]}
    assert {"crash", "timeout", "mismatch"} <= failures, failures
    with CorpusStore(db_path) as store:
        rows = list(store.findings())
        assert store.integrity_check() == "ok"
    stored = {row["failure"] for row in rows}
    assert {"crash", "timeout", "mismatch"} <= stored
    for row in rows:  # what classifies each failure is stored as data
        if row["failure"] == "crash":
            assert row["signal"] == "SIGABRT" or row["exit_code"] is not None, row
        if row["failure"] == "timeout":
            assert row["timeout"] == 1.0, row
    # Crash and timeout findings replay in a worker, even without --isolate.
    replay = kfuzz("replay", "--db", db_path, "--json")
    verdicts = {r["verdict"] for r in replay.json()["replays"]}
    assert verdicts == {"still failing"}, replay.json()


WRITER = """
import sys
from kfuzz.store.corpus import CorpusStore
from kfuzz.execute.executor import Outcome
from kfuzz.execute.findings import Finding
store = CorpusStore(sys.argv[1])
worker = int(sys.argv[2])
metrics = {"mismatch_ratio": 1.0, "mismatches": 1, "numel": 1, "passed": False,
           "nonfinite_mismatches": 0}
for i in range(250):
    case = {"shape": [1, 1], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 1.0},
            "seed": worker * 1000 + i}
    store.record_finding(Finding("ops.softmax", "eager_lowp", "fp64", case,
                                 Outcome("fail", {"y": metrics})))
"""


@pytest.mark.slow
def test_four_processes_250_findings_each_exactly_1000_rows(tmp_path):
    db = tmp_path / "shared.db"
    CorpusStore(db).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(w)], cwd=ROOT)
             for w in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    conn = sqlite3.connect(db)
    assert conn.execute("select count(*), count(distinct fingerprint) from findings").fetchone() \
        == (1000, 1000)
    assert conn.execute("select sum(times_seen) from findings").fetchone()[0] == 1000


def _rows(db: Path) -> dict[str, str]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        return dict(conn.execute("select fingerprint, kind from findings").fetchall())
    except sqlite3.OperationalError:
        return {}


@pytest.mark.slow
def test_sigkill_during_a_run_loses_no_committed_finding(tmp_path):
    for attempt in range(10):
        db = tmp_path / f"killed{attempt}.db"
        proc = subprocess.Popen(
            [*KFUZZ, "run", "ops.softmax", "ops.rmsnorm", "--kernel",
             "tests.helpers_kernels:softmax_two_faults", "--budget", "60", "--seed", str(attempt),
             "--db", str(db), "--json"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = _rows(db)
        time.sleep(0.05 * attempt)  # kill at different points of the run
        seen.update(_rows(db))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert seen, "the run stored nothing within 60 s"
        conn = sqlite3.connect(db)
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        after = dict(conn.execute("select fingerprint, kind from findings").fetchall())
        for key, kind in seen.items():
            # Only a raw row may go, and only because its shrunk case replaced it.
            assert key in after or kind == "raw", (attempt, key, kind)
        if any(key not in after for key in seen):
            assert "shrunk" in after.values()


def test_ctrl_c_stops_cleanly_and_keeps_findings(tmp_path):
    db = tmp_path / "interrupted.db"
    # Ctrl-C at a terminal: SIGINT at its default in the child, even when the tests run as a
    # background job (whose SIGINT the shell ignores, and a child would inherit that).
    proc = subprocess.Popen(
        [*KFUZZ, "run", "ops.softmax", "--kernel", "eager_lowp", "--budget", "120",
         "--db", str(db), "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not _rows(db) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err  # interrupted, whatever was found before
    doc = json.loads(out)
    assert doc["campaigns"][0]["stopped"] == "interrupted" and doc["status"] == "interrupted"
    assert "Traceback" not in err
    conn = sqlite3.connect(db)
    assert conn.execute("select status from runs").fetchone()[0] == "interrupted"
    assert conn.execute("select count(*) from findings").fetchone()[0] >= 1


def test_corpus_with_a_pickle_payload_runs_no_code(tmp_path, kfuzz):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    db = tmp_path / "evil.db"
    CorpusStore(db).close()
    blob = pickle.dumps(Payload())
    conn = sqlite3.connect(db)
    conn.execute('insert into findings (fingerprint, target, kernel, oracle, "case", metrics, '
                 "comparator, status, kind, failure, times_seen) values "
                 "('aa', 'ops.softmax', 'eager_lowp', 'fp64', ?, ?, ?, 'open', 'shrunk', "
                 "'mismatch', 1)", (blob, blob, blob))
    conn.commit()
    conn.close()
    for argv in (["replay"], ["corpus", "list"], ["corpus", "show", "aa"],
                 ["corpus", "export", "aa"]):
        res = kfuzz(*argv, "--db", db)
        assert "Traceback" not in res.err
    replay = kfuzz("replay", "--db", db, "--json")
    assert replay.json()["replays"][0]["verdict"] == "error"
    assert not marker.exists()
    assert sqlite3.connect(db).execute("select count(*) from findings").fetchone()[0] == 1

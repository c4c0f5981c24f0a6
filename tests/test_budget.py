"""`kfuzz run --budget`: the budget bounds the whole run, every target is accounted for, a run
that is stopped says so, and a long run is never silent in a log.

The bounds asserted here are loose on purpose (a loaded 2-core machine must pass them): each
one would fail by a wide margin if the budget did not bound shrinking or starved a target.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from kfuzz.present.summary import run_document, run_text
from kfuzz.run.campaigns import NO_TIME, CampaignRun, run_one
from kfuzz.run.runner import RunReport
from kfuzz.search.campaign import CampaignConfig, CampaignResult

KFUZZ = [sys.executable, "-m", "kfuzz.cli"]


def _kfuzz(*argv: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*KFUZZ, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=600, **kwargs)


def test_shrinking_comes_out_of_the_budget_and_no_target_is_starved(tmp_path):
    # Both kernels fail at once; each finding may shrink for 300 s. Before the budget bounded
    # shrinking, the first target shrank for minutes and the second ran no case. The budget
    # counts from the command's start, imports included: 20 s leaves room for a loaded machine.
    start = time.monotonic()
    proc = _kfuzz("run", "ops.softmax", "ops.rmsnorm", "--kernel", "eager_lowp", "--compare",
                  "exact", "--budget", "20", "--shrink-seconds", "300", "--seed", "1",
                  "--db", "c.db", "--json", "--junit", "j.xml", cwd=tmp_path)
    took = time.monotonic() - start
    assert proc.returncode == 1, proc.stderr
    assert took < 150, took  # 20 s asked; 600 s of shrinking would have been allowed
    doc = json.loads(proc.stdout)
    assert doc["status"] == "done" and doc["budget"] == 20
    states = {t["target"]: (t["state"], t.get("examples", 0)) for t in doc["targets"]}
    assert set(states) == {"ops.softmax", "ops.rmsnorm"}
    for target, (state, examples) in states.items():
        assert state == "run" and examples > 0, (target, state, examples)
    shares = [c["budget"] for c in doc["campaigns"]]
    assert all(0 < share <= 20 for share in shares), shares
    conn = sqlite3.connect(tmp_path / "c.db")
    (results,) = conn.execute("select results from runs").fetchone()
    assert {r["target"]: r["state"] for r in json.loads(results)} == {
        "ops.softmax": "run", "ops.rmsnorm": "run"}


def test_a_target_left_no_time_is_skipped_with_the_reason_never_passed():
    config = CampaignConfig(target="ops.softmax", kernel="eager_lowp", ends_at=time.time() - 1)
    run = run_one(config, executor=None)  # type: ignore[arg-type]  # never reached
    assert run.state == "skipped" and run.skipped == NO_TIME and run.result is None
    ran = CampaignRun(CampaignConfig(target="ops.rmsnorm"),
                      CampaignResult("ops.rmsnorm", "eager_lowp", "fp64", seed=0, examples=5))
    report = RunReport([ran, run], budget=10.0)
    assert report.skipped == [("ops.softmax", NO_TIME)]
    assert [c.target for c in report.campaigns] == ["ops.rmsnorm"]
    doc = run_document(report)
    assert {t["target"]: t["state"] for t in doc["targets"]} == {
        "ops.rmsnorm": "run", "ops.softmax": "skipped"}
    assert doc["skipped"] == [{"target": "ops.softmax", "reason": NO_TIME}]
    assert f"skipped (ran no case):\n  ops.softmax: {NO_TIME}" in run_text(report)
    assert report.exit_code() == 0


def test_a_budget_too_small_for_any_case_is_an_error_not_a_pass(tmp_path):
    proc = _kfuzz("run", "ops.softmax", "ops.rmsnorm", "--budget", "0.001", "--db", "c.db",
                  cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("kfuzz: error:")]
    assert len(errors) == 1 and errors[0].startswith("kfuzz: error: no target ran (ops.softmax: ")
    assert errors[0].endswith("give it a larger --budget")


def test_a_target_that_cannot_be_fuzzed_fails_alone_and_the_run_goes_on(tmp_path):
    # A kernel breaking its output contract on every case is a configuration error: in a run
    # of several targets it fails that target (exit 2), and the others still run.
    plugin = tmp_path / "bad.py"
    plugin.write_text(
        "import kfuzz\n"
        "def fp64(x):\n"
        "    return x.double()\n"
        "def wrong_dtype(x):\n"
        "    return x.float()\n"
        "kfuzz.target('mine.bad', oracle=fp64, kernels={'wrong_dtype': wrong_dtype},\n"
        "             inputs={'x': kfuzz.tensor('rows cols', dtypes=['bfloat16'])})\n"
    )
    proc = _kfuzz("run", "mine.bad", "ops.softmax", "--plugin", str(plugin), "--max-examples",
                  "20", "--seed", "0", "--db", "c.db", "--json", "--junit", "j.xml",
                  cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    states = {t["target"]: t["state"] for t in doc["targets"]}
    assert states == {"mine.bad": "failed", "ops.softmax": "run"}, states
    assert "returned output 'y' as torch.float32" in doc["failed"][0]["error"]
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    errors = [c.get("name") for c in suite.iter("testcase") if c.find("error") is not None]
    assert errors == ["mine.bad"]


def _wait_for(predicate, seconds: float = 120.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_sigterm_stops_a_run_that_says_interrupted_everywhere(tmp_path):
    db = tmp_path / "c.db"
    proc = subprocess.Popen(
        [*KFUZZ, "run", "ops.softmax", "--kernel", "eager_lowp", "--budget", "300",
         "--db", str(db), "--json", "--junit", str(tmp_path / "j.xml")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def running() -> bool:
        if not db.exists():
            return False
        try:
            with sqlite3.connect(db) as conn:
                return bool(conn.execute("select count(*) from runs").fetchone()[0])
        except sqlite3.Error:
            return False

    assert _wait_for(running), "the run never started"
    time.sleep(1.0)  # into the search
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["status"] == "interrupted" and doc["exit_code"] == 130
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    names = {c.get("name"): c for c in suite.iter("testcase")}
    assert names["interrupted"].find("error").get("type") == "interrupted"
    with sqlite3.connect(db) as conn:
        assert conn.execute("select status from runs").fetchone()[0] == "interrupted"


@pytest.mark.slow
def test_a_log_gets_progress_lines_when_stderr_is_not_a_terminal(tmp_path):
    # stderr is a pipe here, as in every CI log: a line at least every LOG_EVERY seconds
    # while cases run (KFUZZ_LOG_EVERY shortens it for the test), and one per target.
    proc = _kfuzz("run", "ops.softmax", "--kernel", "eager_fp32", "--budget", "15",
                  "--db", "c.db", cwd=tmp_path, env={**_env(), "KFUZZ_LOG_EVERY": "0.5"})
    assert proc.returncode in (0, 1), proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("kfuzz: ops.softmax")]
    assert lines[-1].startswith("kfuzz: ops.softmax done: ")
    during = [line for line in lines[:-1] if "examples" in line and "left" in line]
    assert during, proc.stderr


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)

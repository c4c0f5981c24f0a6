"""Findings that survive a change of directory, replay exit codes CI can trust, and the corpus
commands a user reaches for (rm, filters, export), run the way a user runs them: the kfuzz
command in a directory other than the one the kernel or plugin file lives in."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from kfuzz.enums import Status
from kfuzz.execute.executor import Outcome
from kfuzz.execute.findings import Finding, fingerprint
from kfuzz.store.corpus import CorpusStore
from kfuzz.targets.references import normal_plugin, normal_reference

ROOT = Path(__file__).resolve().parents[1]
CASE = {"shape": [2, 8], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 1.0},
        "eps": 1e-6, "seed": 1}
FIND = ["--compare", "exact", "--max-ratio", "0.005", "--max-examples", "10", "--seed", "7",
        "--shrink-seconds", "2", "--pin", "shape=[2,64]"]
KERNEL_FILE = "from kfuzz.kernels.ops import rmsnorm_lowp as rms  # every op in BF16\n"
PLUGIN_FILE = """from dataclasses import replace

from kfuzz.targets import registry as targets

targets.register(replace(targets.get("ops.rmsnorm"), name="{name}"))
"""


def kfuzz_at(cwd: Path, *argv: object) -> subprocess.CompletedProcess[str]:
    """The kfuzz command as a user runs it, in `cwd` (which is not the project root)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "kfuzz.cli", *map(str, argv)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("pragma integrity_check").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    """Three directories: where the user's files live, and two others."""
    out = {name: tmp_path / name for name in ("mine", "elsewhere", "third")}
    for path in out.values():
        path.mkdir()
    (out["mine"] / "mykernels.py").write_text(KERNEL_FILE)
    return out


# --- references in normal form ------------------------------------------------------------------


def test_three_spellings_of_a_kernel_file_are_one_finding(tmp_path, monkeypatch):
    (tmp_path / "mykernels.py").write_text(KERNEL_FILE)
    monkeypatch.chdir(tmp_path)
    spellings = ["mykernels.py:rms", "./mykernels.py:rms", f"{tmp_path}/mykernels.py:rms"]
    forms = {normal_reference(ref) for ref in spellings}
    assert forms == {f"{tmp_path.resolve()}/mykernels.py:rms"}
    keys = {Finding("ops.rmsnorm", ref, "fp64", CASE, Outcome(Status.FAIL)).fingerprint
            for ref in spellings}
    assert keys == {fingerprint("ops.rmsnorm", forms.pop(), "fp64", CASE)}


def test_module_references_and_variant_names_stay_as_typed():
    assert normal_reference("eager_lowp") == "eager_lowp"
    assert normal_reference("mypkg.kernels:rmsnorm") == "mypkg.kernels:rmsnorm"
    assert normal_plugin("mypkg.plugin") == "mypkg.plugin"


def test_a_file_of_an_installed_package_is_stored_as_its_module_name(tmp_path, monkeypatch):
    import kfuzz.kernels.ops as ops

    monkeypatch.chdir(tmp_path)
    assert normal_reference(f"{ops.__file__}:rmsnorm_fp32") == "kfuzz.kernels.ops:rmsnorm_fp32"


@pytest.mark.slow
def test_a_kernel_file_finding_replays_and_exports_from_other_directories(dirs):
    db = dirs["mine"] / "corpus.db"
    run = kfuzz_at(dirs["mine"], "run", "ops.rmsnorm", "--kernel", "mykernels.py:rms", *FIND,
                   "--db", db, "--json")
    assert run.returncode == 1, run.stderr
    kernels = {f["kernel"] for f in json.loads(run.stdout)["findings"]}
    assert kernels == {f"{dirs['mine'].resolve()}/mykernels.py:rms"}
    # Typed another way, the same file finds the same findings: no new rows.
    with CorpusStore(db, read_only=True) as store:
        before = {r["fingerprint"] for r in store.findings()}
    again = kfuzz_at(dirs["mine"], "run", "ops.rmsnorm", "--kernel",
                     f"{dirs['mine']}/mykernels.py:rms", *FIND, "--db", db)
    assert again.returncode == 1, again.stderr
    with CorpusStore(db, read_only=True) as store:
        assert {r["fingerprint"] for r in store.findings()} == before

    replay = kfuzz_at(dirs["elsewhere"], "replay", "--db", db, "--json")
    assert replay.returncode == 1, replay.stdout + replay.stderr  # still failing, no errors
    assert {r["verdict"] for r in json.loads(replay.stdout)["replays"]} == {"still failing"}

    script = dirs["elsewhere"] / "repro.py"
    some_id = sorted(before)[0][:12]
    export = kfuzz_at(dirs["elsewhere"], "corpus", "export", some_id, "--db", db, "-o", script)
    assert export.returncode == 0, export.stderr
    proc = subprocess.run([sys.executable, str(script)], cwd=dirs["third"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout and "Traceback" not in proc.stderr
    assert _integrity(db) == "ok"


# --- recorded plugins -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_plugin_target_finding_replays_reports_and_exports_without_plugin_flags(dirs, tmp_path):
    (dirs["mine"] / "myplugin.py").write_text(PLUGIN_FILE.format(name="my.rmsnorm"))
    db = tmp_path / "corpus.db"
    run = kfuzz_at(dirs["mine"], "run", "my.rmsnorm", "--plugin", "myplugin.py", "--kernel",
                   "eager_lowp", *FIND, "--db", db)
    assert run.returncode == 1, run.stderr
    plugin = f"{dirs['mine'].resolve()}/myplugin.py"
    with CorpusStore(db, read_only=True) as store:
        rows = list(store.findings())
        assert rows and {r["plugins"] for r in rows} == {json.dumps([plugin])}
        assert store.runs()[0]["plugins"] == [plugin]

    replay = kfuzz_at(dirs["elsewhere"], "replay", "--db", db, "--json")
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert {r["verdict"] for r in json.loads(replay.stdout)["replays"]} == {"still failing"}

    script = dirs["elsewhere"] / "repro.py"
    assert kfuzz_at(dirs["elsewhere"], "corpus", "export", rows[0]["fingerprint"][:12], "--db",
                    db, "-o", script).returncode == 0
    proc = subprocess.run([sys.executable, str(script)], cwd=dirs["third"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr

    tests = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                            "--kfuzz-db", str(db), "--kfuzz-no-record"], cwd=dirs["third"],
                           capture_output=True, text=True, timeout=300)
    assert tests.returncode == 1, tests.stdout
    assert "still fails" in tests.stdout and "could not be replayed" not in tests.stdout

    report = kfuzz_at(dirs["third"], "report", "--db", db, "--out", tmp_path / "report",
                      "--max-plots", "1")
    assert report.returncode == 0, report.stderr
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "Not replayed for this report" not in summary
    assert _integrity(db) == "ok"


def test_the_same_plugin_named_twice_is_loaded_once(dirs):
    (dirs["mine"] / "a.py").write_text(PLUGIN_FILE.format(name="dup.rmsnorm"))
    res = kfuzz_at(dirs["mine"], "targets", "--json", "--plugin", "a.py", "--plugin", "./a.py",
                   "--plugin", dirs["mine"] / "a.py")
    assert res.returncode == 0, res.stderr
    assert "dup.rmsnorm" in {t["name"] for t in json.loads(res.stdout)["targets"]}


# --- replay exit codes ------------------------------------------------------------------------------


def _stored(db: Path, *findings: Finding) -> list[str]:
    with CorpusStore(db) as store:
        return store.record_findings(findings)


def _failing(kernel: str = "eager_lowp", seed: int = 1, target: str = "ops.rmsnorm") -> Finding:
    metrics = {"mismatch_ratio": 0.5, "mismatches": 2, "numel": 4, "passed": False,
               "nonfinite_mismatches": 0}
    return Finding(target, kernel, "fp64", {**CASE, "seed": seed},
                   Outcome(Status.FAIL, {"y": metrics}), "shrunk", {"mode": "exact"})


def test_replay_of_a_target_or_id_that_matches_nothing_is_an_error(kfuzz, db_path):
    _stored(db_path, _failing())
    res = kfuzz("replay", "--db", db_path, "--target", "ops.rmsnrom")
    assert res.code == 2
    assert res.err == (f"kfuzz: error: no finding of target 'ops.rmsnrom' in '{db_path}'; "
                       "targets with findings: ops.rmsnorm; did you mean 'ops.rmsnorm'?\n")
    res = kfuzz("replay", "--db", db_path, "--id", "abcdef")
    assert res.code == 2 and res.err.startswith("kfuzz: error: no finding 'abcdef'")


def test_replay_exit_status_counts_errors_unless_accepted(kfuzz, db_path):
    _stored(db_path, _failing(), _failing(kernel="eager_fp32"))
    passing = kfuzz("replay", "--db", db_path, "--target", "ops.rmsnorm")
    assert passing.code == 1  # eager_lowp still fails
    _stored(db_path, _failing(kernel="tests.nowhere:rms"))
    assert kfuzz("replay", "--db", db_path).code == 3
    res = kfuzz("replay", "--db", db_path, "--accept-errors")
    assert res.code == 1 and "1 still failing, 1 fixed, 1 error" in res.out
    assert "--accept-errors" in kfuzz("replay", "--help").out


def test_replay_with_another_kernel_leaves_the_finding_alone(kfuzz, db_path):
    key, = _stored(db_path, _failing())
    assert kfuzz("replay", "--db", db_path).code == 1
    res = kfuzz("replay", "--db", db_path, "--kernel", "eager_fp32", "--json")
    assert res.code == 0
    assert [(r["verdict"], r["substitute"]) for r in res.json()["replays"]] == [("fixed", True)]
    with CorpusStore(db_path, read_only=True) as store:
        row = store.raw(key)
        replays = store.replays(key)
    assert (row["status"], row["last_replay_status"], row["last_replay_kernel"]) == (
        "open", "fail", "eager_lowp")
    assert [(r["kernel"], r["status"], r["substitute"]) for r in replays] == [
        ("eager_lowp", "fail", 0), ("eager_fp32", "pass", 1)]
    # A plain replay afterwards still sees the finding's own kernel fail; nothing flips.
    assert kfuzz("replay", "--db", db_path).code == 1
    shown = kfuzz("corpus", "show", key[:12], "--db", db_path)
    assert "pass with eager_fp32 (0%) [another kernel or oracle]" in shown.out


def test_report_trend_files_another_kernels_replays_under_that_kernel(db_path):
    import datetime as dt

    from kfuzz.present.report import FindingItem, trend_points

    row = {"fingerprint": "ab" * 32, "kernel": "eager_lowp", "last_seen": "2025-01-01T00:00:00",
           "mismatch_ratio": 0.5}
    replays = [{"at": "2025-01-02T00:00:00", "kernel": "eager_lowp", "mismatch_ratio": 0.5},
               {"at": "2025-01-03T00:00:00", "kernel": "eager_fp32", "mismatch_ratio": 0.0}]
    _, lines = trend_points("ops.rmsnorm", [FindingItem(row, replays)], [], 8)
    day = dt.datetime
    assert lines == {
        "abababababab eager_lowp": [(day(2025, 1, 1), 0.5, "seen"), (day(2025, 1, 2), 0.5, "replay")],
        "abababababab eager_fp32": [(day(2025, 1, 3), 0.0, "replay")],
    }


# --- corpus rm, list filters, did you mean ------------------------------------------------------------


def test_corpus_rm_by_id_and_by_filters(kfuzz, db_path):
    a, b, c = _stored(db_path, _failing(seed=1), _failing(seed=2),
                      _failing(kernel="eager_fp32", seed=3))
    with CorpusStore(db_path) as store:
        store.record_replay(a, status="fail", kernel="eager_lowp", oracle="fp64", outcome=None,
                            error=None)
    res = kfuzz("corpus", "rm", a[:10], "--db", db_path)
    assert res.code == 0 and res.out == f"removed 1 finding from {db_path}: {a[:12]}\n"
    res = kfuzz("corpus", "rm", "--kernel", "eager_fp32", "--db", db_path, "--json")
    assert res.code == 0 and res.json()["removed"] == [c]
    with CorpusStore(db_path, read_only=True) as store:
        assert [r["fingerprint"] for r in store.findings()] == [b]
        assert store.replays() == []  # the removed finding's replays went with it
        assert store.integrity_check() == "ok"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "kfuzz: error: name the findings to remove: their ids, or --target/--kernel/--status "
             "(see `kfuzz corpus list`)"),
        (["abc", "--target", "ops.rmsnorm"], "kfuzz: error: give finding ids or --target, not both"),
        (["0123456789", "{key}"], "kfuzz: error: no finding '0123456789' in '{db}'; see `kfuzz corpus list`"),
        (["--target", "ops.rmsnrom"], "kfuzz: error: no finding has target 'ops.rmsnrom' in '{db}'; "
                                      "targets with findings: ops.rmsnorm; did you mean 'ops.rmsnorm'?"),
        (["--status", "fixed"], "kfuzz: error: no finding matches --status in '{db}'; nothing removed"),
    ],
    ids=["nothing-named", "ids-and-filters", "unknown-id", "typo", "no-match"],
)
def test_corpus_rm_refuses_and_removes_nothing(kfuzz, db_path, argv, message):
    key, = _stored(db_path, _failing())
    res = kfuzz("corpus", "rm", *[a.format(key=key[:12]) for a in argv], "--db", db_path)
    assert res.code == 2
    assert res.err == message.format(db=db_path) + "\n"
    with CorpusStore(db_path, read_only=True) as store:
        assert store.count() == 1


def test_corpus_list_filters(kfuzz, db_path):
    a, b = _stored(db_path, _failing(), _failing(kernel="eager_fp32"))
    by = {k: {r["fingerprint"] for r in kfuzz("corpus", "list", "--db", db_path, "--json",
                                               *k.split()).json()["findings"]}
          for k in ("--kernel eager_fp32", "--kernel eager_lowp --status open", "--failure mismatch",
                    "--kind shrunk --status fixed", "--failure crash")}
    assert by == {"--kernel eager_fp32": {b}, "--kernel eager_lowp --status open": {a},
                  "--failure mismatch": {a, b}, "--kind shrunk --status fixed": set(),
                  "--failure crash": set()}
    res = kfuzz("corpus", "list", "--db", db_path, "--kernel", "eager_lwp")
    assert res.code == 2
    assert res.err.endswith("kernels with findings: eager_fp32, eager_lowp; did you mean 'eager_lowp'?\n")


def test_unknown_kernel_names_suggest_the_close_one(kfuzz, db_path):
    res = kfuzz("run", "ops.rmsnorm", "--kernel", "eager_lwp", "--db", db_path)
    assert res.code == 2 and res.err.rstrip().endswith("did you mean 'eager_lowp'?")


# --- export's output file --------------------------------------------------------------------------


def test_export_to_a_missing_directory_or_an_existing_file(kfuzz, db_path, tmp_path):
    key, = _stored(db_path, _failing())
    missing = tmp_path / "missing" / "r.py"
    res = kfuzz("corpus", "export", key[:12], "--db", db_path, "-o", missing)
    assert res.code == 2
    assert res.err == (f"kfuzz: error: -o '{missing}': no directory '{missing.parent}'; "
                       "create it first\n")
    out = tmp_path / "r.py"
    out.write_text("my own notes\n")
    res = kfuzz("corpus", "export", key[:12], "--db", db_path, "-o", out)
    assert res.code == 2 and res.err == f"kfuzz: error: -o '{out}' exists; pass --force to overwrite it\n"
    assert out.read_text() == "my own notes\n"
    res = kfuzz("corpus", "export", key[:12], "--db", db_path, "-o", out, "--force")
    assert res.code == 0 and out.read_text().startswith("#!/usr/bin/env python3")

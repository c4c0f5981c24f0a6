"""`kfuzz corpus export`: the reproducer judges a finding exactly as the run that stored it."""

from __future__ import annotations

import subprocess
import sys

from kfuzz import run_case
from kfuzz.execute.findings import Finding
from kfuzz.judge.comparator import Comparator
from kfuzz.store.corpus import CorpusStore

# A dsv4.q_norm_rope case on which the low-precision rsqrt model differs from the float64
# reference in about 0.11% of the BF16 outputs: over exact's zero, within the target's 0.5%.
BETWEEN = {"shape": [1, 17, 256], "max_position": 1, "seed": 944980, "rope_dim": 64,
           "q": {"kind": "uniform", "low": -35.0, "high": -34.0}, "late_positions": False,
           "eps": 1e-06, "materialise": 2}
# What `kfuzz run dsv4.q_norm_rope --kernel rsqrt_hw --compare exact` stores as the comparator:
# the override, applied to each output's default (pypto-lib's 0.5% budget kept).
EXACT = {"mode": "exact"}


def _export_and_run(kfuzz_cli, db, fingerprint, tmp_path, *args):
    script = tmp_path / f"repro_{fingerprint[:8]}.py"
    assert kfuzz_cli("corpus", "export", fingerprint, "--db", db, "-o", script).code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    return script, subprocess.run([sys.executable, str(script), *args], capture_output=True,
                                  text=True, cwd=elsewhere)


def test_exact_with_the_targets_budget_kept_passes_a_case_under_it(kfuzz, tmp_path):
    outcome = run_case("dsv4.q_norm_rope", BETWEEN, kernel="rsqrt_hw", comparator=EXACT)
    ratio = outcome.outputs["out"]["mismatch_ratio"]
    assert 0 < ratio <= 0.005 and outcome.status == "pass", ratio
    db = tmp_path / "c.db"
    with CorpusStore(db) as store:
        key = store.record_finding(Finding("dsv4.q_norm_rope", "rsqrt_hw", "fp64", BETWEEN,
                                           outcome, comparator=EXACT))
    _, proc = _export_and_run(kfuzz, db, key, tmp_path)
    # Judged by exact(max_ratio=0) the script would fail this case; the run passed it.
    expected = Comparator.from_dict(outcome.outputs["out"]["comparator"]).describe()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"output out: PASS {expected}" in proc.stdout
    assert "max_ratio=0.005" in expected or "0.5%" in expected, expected


def test_a_stored_exact_finding_replays_in_the_script_with_the_stored_verdict(kfuzz, tmp_path):
    db = tmp_path / "c.db"
    run = kfuzz("run", "dsv4.q_norm_rope", "--kernel", "rsqrt_hw", "--compare", "exact",
                "--pin", "shape=[1,2,64]", "--max-examples", "10", "--shrink-seconds", "2",
                "--seed", "0", "--db", db, "--json")
    assert run.code == 1, run.err
    finding = run.json()["findings"][0]
    stored = finding["comparator"]["out"]
    assert stored["mode"] == "exact" and stored["max_ratio"] == 0.005
    script, proc = _export_and_run(kfuzz, db, finding["fingerprint"], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"output out: FAIL {Comparator.from_dict(stored).describe()}" in proc.stdout
    assert 'DEVICE = "cpu"' in script.read_text()


SOFTMAX = {"shape": [2, 8], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 1.0},
           "seed": 1, "materialise": 2}


def test_the_script_runs_where_the_run_ran_unless_told_otherwise(kfuzz, tmp_path):
    # Kernel vs kernel: the oracle is a kernel variant, which runs on the run's device.
    db = tmp_path / "c.db"
    outcome = run_case("ops.softmax", SOFTMAX, kernel="eager_lowp", oracle="eager_fp32",
                       comparator=EXACT)
    with CorpusStore(db) as store:
        key = store.record_finding(Finding("ops.softmax", "eager_lowp", "eager_fp32", SOFTMAX,
                                           outcome, comparator=EXACT, device="cuda"))
    script, proc = _export_and_run(kfuzz, db, key, tmp_path, "--device", "cpu")
    assert 'DEVICE = "cuda"' in script.read_text()
    assert proc.returncode == (1 if outcome.failed else 0), proc.stdout + proc.stderr

"""Build tests/data/corpus.db: one open finding and one fixed finding, each replayed once.

    python tests/data/make_corpus.py [OUT]

The open finding is the all-BF16 RMSNorm (`eager_lowp`) against the float64 oracle in exact
comparison: it fails now and keeps failing. The fixed finding names the kernel
`tests.data.corpus_kernels:rmsnorm`; it is recorded from what that kernel computed before its
fix (every op in BF16) and replays against what it computes now (FP32 upcast), which passes.
The file is left in rollback-journal mode, a single self-contained file to commit.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kfuzz.execute.executor import Job, run_case  # noqa: E402
from kfuzz.execute.findings import Finding  # noqa: E402
from kfuzz.kernels.ops import rmsnorm_lowp  # noqa: E402
from kfuzz.store.corpus import CorpusStore  # noqa: E402
from kfuzz.store.replay import replay  # noqa: E402
from kfuzz.targets import registry as registry  # noqa: E402
from kfuzz.targets.registry import Variant  # noqa: E402

FIXED_KERNEL = "tests.data.corpus_kernels:rmsnorm"
COMPARATOR = {"mode": "exact", "max_ratio": 0.005}
OPEN_CASE = {"shape": [4, 64], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 1.0},
             "eps": 1e-6, "seed": 1}
FIXED_CASE = {"shape": [8, 128], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 1.0},
              "eps": 1e-6, "seed": 2}


def build(out: Path) -> dict[str, str]:
    """Write the corpus to `out` (replacing it); returns {fingerprint: status}."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(out) + suffix).unlink(missing_ok=True)
    target = registry.get("ops.rmsnorm")
    oracle = target.oracles["fp64"]
    store = CorpusStore(out)
    run_id = store.start_run(argv=["tests/data/make_corpus.py"], profile="ci", seed=0,
                             targets=[target.name])
    findings = []
    for kernel_name, variant, case in (
        ("eager_lowp", target.kernels["eager_lowp"], OPEN_CASE),
        # What the fixed kernel computed when the finding was made.
        (FIXED_KERNEL, Variant(FIXED_KERNEL, rmsnorm_lowp), FIXED_CASE),
    ):
        job = Job(target.name, kernel_name, "fp64", case, COMPARATOR)
        outcome = run_case(target, variant, oracle, job)
        assert outcome.failed, (kernel_name, outcome.to_dict())
        findings.append(Finding(target.name, kernel_name, "fp64", dict(case), outcome,
                                "shrunk", dict(COMPARATOR)))
    store.record_findings(findings, run_id=run_id)
    store.finish_run(run_id, status="done", examples=2, findings=2, results=[])
    statuses = {r.fingerprint: r.status for r in replay(store)}
    assert sorted(statuses.values()) == ["fail", "pass"], statuses
    out_rows = {row["fingerprint"]: row["status"] for row in store.findings()}
    store.close()
    conn = sqlite3.connect(out)
    conn.execute("pragma wal_checkpoint(truncate)")
    conn.execute("pragma journal_mode = delete")
    conn.execute("vacuum")
    conn.close()
    return out_rows


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("corpus.db")
    for key, status in build(path).items():
        print(f"{key[:12]}  {status}")
    print(f"wrote {path}")

"""--workers: wall time of a run on two targets with one worker process and with two.

Calls the library's run path (`kfuzz.run.runner.run`, what `kfuzz run` calls) with a fresh corpus
each run, alternating workers=1 and workers=2 after one untimed warm-up run, and reports the
median wall time of each and their ratio. Worker processes start (and import torch) inside the
timed run; the calling process is already warm, as a long-lived session or a second command
would be. Also checks that both targets were fuzzed into one corpus and that every reported
finding is in it.

    python -m bench.workers [--quick] [--runs 3] [--examples 300]
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

from kfuzz.run.plan import RunOptions
from kfuzz.run.runner import run
from kfuzz.search.campaign import CampaignConfig

from bench.common import median, parser, write

TARGETS = ["ops.rmsnorm", "ops.softmax"]


def one_run(workers: int, examples: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "c.db"
        options = RunOptions(targets=TARGETS, workers=workers, campaign=CampaignConfig(
            target="", max_examples=examples, comparator={"mode": "exact"}, seed=seed))
        start = time.perf_counter()
        report = run(options, db=db)
        wall = time.perf_counter() - start
        conn = sqlite3.connect(db)
        stored = {r[0] for r in conn.execute("select fingerprint from findings")}
        conn.close()
        reported = {f.fingerprint for f in report.findings}
        return {
            "workers": workers, "wall_s": wall, "exit": report.exit_code(),
            "targets": sorted(c.target for c in report.campaigns),
            "examples": sum(c.examples for c in report.campaigns),
            "reported_all_stored": reported <= stored, "rows": len(stored),
        }


def main() -> None:
    p = parser(__doc__, "workers.json")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--examples", type=int, default=300)
    args = p.parse_args()
    runs, examples = (1, 30) if args.quick else (args.runs, args.examples)
    one_run(1, min(examples, 20), seed=12345)  # warm-up: imports and first calls, untimed
    results: dict[int, list[dict]] = {1: [], 2: []}
    for i in range(runs):
        for workers in (1, 2):
            results[workers].append(one_run(workers, examples, seed=i))
    summary = {w: median([r["wall_s"] for r in rs]) for w, rs in results.items()}
    doc = {
        "mode": "quick" if args.quick else "full", "method": "library", "runs": runs,
        "examples": examples,
        "targets": TARGETS, "results": {str(w): rs for w, rs in results.items()},
        "median_wall_s": {str(w): s for w, s in summary.items()},
        "speedup": summary[1] / summary[2],
        "all_runs_fuzzed_both_targets": all(r["targets"] == TARGETS
                                            for rs in results.values() for r in rs),
        "no_lost_rows": all(r["reported_all_stored"] for rs in results.values() for r in rs),
    }
    write(args.out, doc)
    print(f"median wall: --workers 1 {summary[1]:.2f} s, --workers 2 {summary[2]:.2f} s, "
          f"speedup {doc['speedup']:.2f}x; both targets fuzzed in every run: "
          f"{doc['all_runs_fuzzed_both_targets']}; no lost rows: {doc['no_lost_rows']}")


if __name__ == "__main__":
    main()

"""Corpus scale: storing, replaying and listing many findings.

1. insert: N new findings (small `ops.rmsnorm` cases, each with the metrics of a real failing
   outcome) into an empty corpus with one `CorpusStore.record_findings` call (one
   transaction), then
2. upsert: the same N findings again (each updates its row), one call;
3. upsert, one call per finding (`record_finding`, as a campaign stores findings as they
   come), on the same N rows; then again with `PRAGMA synchronous = NORMAL` (a what-if: the
   store leaves SQLite's FULL, which syncs the log at every commit);
4. replay: `kfuzz.store.replay.replay` of R small stored cases (each run again and its replay
   recorded);
5. list: `kfuzz corpus list` on a corpus of L rows, run as a subprocess with its output sent
   to /dev/null (Python start-up and imports included; measured alone as `kfuzz corpus list`
   on a one-row corpus), plain and with --json.
Each step runs several times (fresh files each time) and reports the median. A cProfile of one
bulk upsert says what dominates its time.

    python -m bench.corpus_scale [--quick] [--runs 3]
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kfuzz.execute.executor import InProcessExecutor, Job
from kfuzz.execute.findings import Finding
from kfuzz.store.corpus import CorpusStore
from kfuzz.store.replay import replay

from bench import common

TARGET, KERNEL, ORACLE = "ops.rmsnorm", "eager_lowp", "fp64"
EXACT = {"mode": "exact", "max_ratio": 0.0}
FULL = {"findings": 10_000, "replays": 1_000, "list_rows": 100_000, "runs": 3}
QUICK = {"findings": 300, "replays": 30, "list_rows": 2_000, "runs": 1}


def small_case(i: int) -> dict[str, Any]:
    """The i-th small case: up to 4 x 64 elements, BF16, normal values."""
    return {"shape": [1 + i % 4, 8 * (1 + i % 8)], "dtype": "bfloat16",
            "x": {"kind": "normal", "scale": 1.0}, "eps": 1e-6, "seed": i}


def findings(n: int) -> list[Finding]:
    """n distinct findings; each carries the outcome of running its case exactly. They are
    stored as raw findings: shrunk ones of one failure signature are one finding (one row
    per bug), and this measures n rows."""
    ex = InProcessExecutor()
    outcomes = {}
    out = []
    for i in range(n):
        case = small_case(i)
        key = (tuple(case["shape"]),)
        if key not in outcomes:
            outcomes[key] = ex.evaluate([Job(TARGET, KERNEL, ORACLE, case, EXACT)])[0]
        out.append(Finding(TARGET, KERNEL, ORACLE, case, outcomes[key], "raw", dict(EXACT),
                           shrink={"seconds": 0.5, "steps": 10, "complete": True,
                                   "size_before": 1000, "size_after": 16}))
    return out


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def store_times(items: list[Finding], tmp: Path, run: int) -> dict[str, float]:
    """Seconds for bulk insert, bulk upsert and per-finding upsert of `items`."""
    with CorpusStore(tmp / f"store{run}.db") as store:
        insert = _timed(lambda: store.record_findings(items))
        upsert = _timed(lambda: store.record_findings(items))

        def one_by_one() -> None:
            for finding in items:
                store.record_finding(finding)

        single = _timed(one_by_one)
        # What-if: WAL's default synchronous=FULL syncs the log at every commit; NORMAL
        # syncs at checkpoints only (still safe against a crashed process, not power loss).
        store.db.execute("PRAGMA synchronous = NORMAL")
        relaxed = _timed(one_by_one)
        assert store.count() == len(items)
    return {"insert": insert, "upsert": upsert, "upsert_one_by_one": single,
            "upsert_one_by_one_sync_normal": relaxed}


def profile_upsert(items: list[Finding], tmp: Path, top: int = 12) -> list[dict[str, Any]]:
    """The functions that take the most own time in one bulk upsert of `items`."""
    with CorpusStore(tmp / "profile.db") as store:
        store.record_findings(items)
        profile = cProfile.Profile()
        profile.enable()
        store.record_findings(items)
        profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = max(v[3] for v in stats.values())
    rows = [{"function": f"{Path(path).name}:{line}({name})",
             "own_share": round(own / total, 3), "cum_share": round(cum / total, 3),
             "calls_per_finding": round(calls / len(items), 2)}
            for (path, line, name), (_, calls, own, cum, _) in stats.items()]
    rows.sort(key=lambda r: -r["own_share"])
    return rows[:top]


def replay_time(items: list[Finding], tmp: Path, run: int) -> dict[str, Any]:
    """Seconds to replay every finding of a corpus holding `items`, and the verdicts."""
    with CorpusStore(tmp / f"replay{run}.db") as store:
        store.record_findings(items)
        start = time.perf_counter()
        results = replay(store)
        seconds = time.perf_counter() - start
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    return {"seconds": seconds, "replayed": len(results), "statuses": statuses}


def big_corpus(items: list[Finding], rows: int, path: Path) -> None:
    """A corpus of `rows` findings: `items` stored by record_findings, then copies of those
    rows with fresh fingerprints added in SQL (only the listing is measured on it)."""
    with CorpusStore(path) as store:
        store.record_findings(items)
    conn = sqlite3.connect(path)
    columns = [r[1] for r in conn.execute("pragma table_info(findings)")]
    others = ", ".join(f'"{c}"' for c in columns if c != "fingerprint")
    have = len(items)
    while have < rows:
        batch = min(have, rows - have)
        conn.execute(f"insert into findings (fingerprint, {others}) select "
                     f"lower(hex(randomblob(32))), {others} from findings limit {batch}")
        have += batch
    conn.commit()
    conn.close()


def cli_seconds(args: list[str], runs: int) -> float:
    """Median wall seconds of `python -m kfuzz.cli ARGS` with stdout to /dev/null."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kfuzz.cli", *args], stdout=subprocess.DEVNULL,
                       check=True, env=env)
        times.append(time.perf_counter() - start)
    return common.median(times)


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = common.parser(__doc__, "corpus_scale.json")
    p.add_argument("--runs", type=int, default=None, help="runs per step (default 3; 1 with "
                   "--quick)")
    args = p.parse_args(argv)
    common.single_thread()
    size = QUICK if args.quick else FULL
    runs = args.runs or size["runs"]
    items = findings(size["findings"])
    out: dict[str, Any] = {"mode": "quick" if args.quick else "full", "runs": runs,
                           "findings": size["findings"], "replays": size["replays"],
                           "list_rows": size["list_rows"]}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        stores = [store_times(items, tmp, r) for r in range(runs)]
        out["store_seconds"] = {k: round(common.median([s[k] for s in stores]), 3)
                                for k in stores[0]}
        print(f"store {size['findings']}: {out['store_seconds']}", flush=True)
        out["upsert_profile"] = profile_upsert(items, tmp)
        replays = [replay_time(items[: size["replays"]], tmp, r) for r in range(runs)]
        out["replay_seconds"] = round(common.median([r["seconds"] for r in replays]), 3)
        out["replay_statuses"] = replays[0]["statuses"]
        print(f"replay {size['replays']}: {out['replay_seconds']} s "
              f"{out['replay_statuses']}", flush=True)
        big = tmp / "big.db"
        big_corpus(items, size["list_rows"], big)
        one = tmp / "one.db"
        with CorpusStore(one) as store:
            store.record_findings(items[:1])
        cli_runs = 1 if args.quick else max(runs, 5)
        out["list_seconds"] = {
            "plain": round(cli_seconds(["corpus", "list", "--db", str(big)], cli_runs), 3),
            "json": round(cli_seconds(["corpus", "list", "--json", "--db", str(big)],
                                      cli_runs), 3),
            "one_row_corpus": round(cli_seconds(["corpus", "list", "--db", str(one)],
                                                cli_runs), 3),
            "runs": cli_runs,
        }
        print(f"corpus list {size['list_rows']} rows: {out['list_seconds']}", flush=True)
    common.write(args.out, out)


if __name__ == "__main__":
    main()

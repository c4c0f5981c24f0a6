"""Bug-finding power: kfuzz against a fixed-seed test and uniform random sampling, on seeded
faults (bench/seeded.py).

For each fault:
- fixed: the production-shape case with normal inputs at seeds 0, 1, 2, as pypto-lib's tests
  run today; detected when any of them fails.
- kfuzz: `run_campaign` (dev profile, batch 1) with a time budget, stopped once its first
  shrunk finding is in. Records the examples and seconds to the first failing case, then the
  shrunk case's size (`Target.case_size`) and the shrink time.
- uniform: cases drawn uniformly from the same case space (bench/samplers.py) through the same
  executor, until one fails or the same budget is spent.
kfuzz and uniform run once per seed (5 seeds by default). A detection counts only if the
fault's correct kernel passes the detected case, which is checked and recorded. How rare the
fault is in the case space is measured too: the fraction of 200 uniformly sampled cases it
fails on.

Sizes are compared with the smallest known failing case: the brute-force result of
bench/smallest.py (read from --smallest), lowered if any run here detects a smaller case, an
earlier run's results (--known, by default the committed ones) hold one that still fails, or
the recorded cases (--cases, by default bench/known_cases.json: failing cases found outside
this benchmark, each with where it came from) hold one that still fails.

kfuzz's shrinker keeps a smaller case only when it fails in a failure bucket of the case it
started from (`Outcome.buckets()`, such as `y:mismatch:wrong` against `y:mismatch:rounding`),
so each shrunk case is held to the smallest known case of its own bucket: every known case
above is run to learn its buckets (the brute-force result names them per bucket), and a shrunk
case failing in several buckets is held to the smallest among them. `shrunk_over_smallest` is
that ratio; `shrunk_over_smallest_any`, against the smallest known case of any bucket, is kept
beside it.

    python -m bench.bug_finding [--quick] [--budget 60] [--seeds 5] [--fault NAME ...]
                                [--detect-only] [--plain-share N]

`--plain-share N` runs kfuzz with one drawn case in N plain instead of the default
(`kfuzz.search.drawn.PLAIN_SHARE`): how the share was chosen (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kfuzz.cases.materialise import stamp
from kfuzz.execute.executor import InProcessExecutor, Job, Outcome
from kfuzz.execute.findings import Finding
from kfuzz.search import drawn
from kfuzz.search.campaign import CampaignConfig, run_campaign
from kfuzz.targets.registry import get

from bench import common
from bench.samplers import sampler
from bench.seeded import FAULTS, FIXED_SEEDS, Fault, by_name


class _Detected(BaseException):
    """Ends a campaign at its first failing case (--detect-only)."""


class _Counting:
    """An executor that counts the cases it runs and notes when the first one fails (and
    which case it was); with `stop`, it ends the campaign there."""

    def __init__(self, stop: bool = False) -> None:
        self.inner = InProcessExecutor()
        self.cases = 0
        self.first: tuple[int, float] | None = None
        self.first_case: dict[str, Any] | None = None
        self.start = time.perf_counter()
        self.stop = stop

    def evaluate(self, jobs: Sequence[Job]) -> list[Outcome]:
        outcomes = self.inner.evaluate(jobs)
        for job, outcome in zip(jobs, outcomes, strict=True):
            self.cases += 1
            if outcome.failed and self.first is None:
                self.first = (self.cases, time.perf_counter() - self.start)
                self.first_case = job.case
                if self.stop:
                    raise _Detected()
        return outcomes

    def close(self) -> None:
        self.inner.close()


class _Shrunk(Exception):
    """Ends a campaign once its first shrunk finding exists."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.fingerprint)
        self.finding = finding


def _job(fault: Fault, case: dict[str, Any], kernel: str | None = None) -> Job:
    """The job that runs `case` with the fault's kernel (or `kernel`), oracle and comparator."""
    oracle = fault.oracle or get(fault.target).default_oracle
    return Job(fault.target, kernel or fault.kernel, oracle, case, fault.comparator)


def _reference_passes(fault: Fault, case: dict[str, Any]) -> bool:
    return not InProcessExecutor().evaluate([_job(fault, case, fault.reference)])[0].failed


def fixed_seed(fault: Fault) -> dict[str, Any]:
    """The fixed-seed test at the production shape: per seed, failed or not."""
    target = get(fault.target)
    ex = InProcessExecutor()
    start = time.perf_counter()
    per_seed = []
    first = None
    for i, seed in enumerate(FIXED_SEEDS):
        case = stamp({**fault.production(seed), **fault.pins})
        outcome = ex.evaluate([_job(fault, case)])[0]
        per_seed.append({"seed": seed, "failed": outcome.failed, "ratio": outcome.worst_ratio()})
        if outcome.failed and first is None:
            first = {"examples": i + 1, "seconds": round(time.perf_counter() - start, 3)}
    return {"detected": first is not None, "seeds": per_seed, "first": first,
            "size": target.case_size({**fault.production(0), **fault.pins})}


def kfuzz(fault: Fault, seed: int, budget: float, detect_only: bool = False) -> dict[str, Any]:
    """One kfuzz campaign on `fault` with `budget` seconds of search; with `detect_only`, it
    ends at the first failing case (nothing is shrunk)."""
    target = get(fault.target)
    counting = _Counting(stop=detect_only)

    def on_finding(finding: Finding) -> None:
        if finding.kind == "shrunk":
            raise _Shrunk(finding)

    config = CampaignConfig(target=fault.target, kernel=fault.kernel, oracle=fault.oracle,
                            comparator=fault.comparator, budget=budget, seed=seed, batch=1,
                            pins=fault.pins or None)
    shrunk: Finding | None = None
    try:
        result = run_campaign(config, executor=counting, on_finding=on_finding)
        examples = result.examples
    except _Shrunk as done:
        shrunk = done.finding
        examples = counting.cases
    except _Detected:
        examples = counting.cases
    out: dict[str, Any] = {"seed": seed, "detected": counting.first is not None,
                           "examples_run": examples,
                           "seconds": round(time.perf_counter() - counting.start, 3)}
    if counting.first is not None:
        out.update(examples=counting.first[0], seconds_to_detect=round(counting.first[1], 3))
    if detect_only and counting.first_case is not None:
        out.update(case=counting.first_case,
                   reference_passes=_reference_passes(fault, counting.first_case))
    if shrunk is not None:
        out.update(size=target.case_size(shrunk.case), case=shrunk.case,
                   shrink=shrunk.shrink, reference_passes=_reference_passes(fault, shrunk.case))
    return out


def uniform(fault: Fault, seed: int, budget: float) -> dict[str, Any]:
    """Uniform random sampling of `fault`'s case space until a case fails or `budget`
    seconds are spent."""
    target = get(fault.target)
    draw = sampler(fault.target, target.max_numel, fault.pins)
    rng = random.Random(seed)
    ex = InProcessExecutor()
    start = time.perf_counter()
    examples = 0
    while time.perf_counter() - start < budget:
        case = draw(rng)
        examples += 1
        outcome = ex.evaluate([_job(fault, case)])[0]
        if outcome.failed:
            elapsed = time.perf_counter() - start
            return {"seed": seed, "detected": True, "examples": examples,
                    "seconds_to_detect": round(elapsed, 3), "size": target.case_size(case),
                    "case": case, "reference_passes": _reference_passes(fault, case)}
    return {"seed": seed, "detected": False, "examples_run": examples,
            "seconds": round(time.perf_counter() - start, 3)}


def _verdict(k: dict[str, Any], u: dict[str, Any]) -> str:
    """kfuzz against uniform: more detections wins; at equal detections, the median time to
    the first detection decides when one is more than 1.25 times and 0.25 s longer than the
    other (below that, timer noise and Hypothesis' start-up decide)."""
    if k["detected"] != u["detected"]:
        return "better" if k["detected"] > u["detected"] else "worse"
    if not k["detected"]:
        return "equal"
    a, b = k["median_seconds"], u["median_seconds"]
    if b > 1.25 * a and b - a > 0.25:
        return "better"
    if a > 1.25 * b and a - b > 0.25:
        return "worse"
    return "equal"


def cases_ratio(k: dict[str, Any], u: dict[str, Any]) -> float | None:
    """kfuzz's median cases to detection over uniform sampling's (below 1: kfuzz needs fewer);
    None unless both detected. A method that missed where the other detected counts as
    infinitely worse (inf) or better (0)."""
    if not k["detected"] and not u["detected"]:
        return None
    if not u["detected"]:
        return 0.0
    if not k["detected"]:
        return float("inf")
    return round(k["median_examples"] / max(u["median_examples"], 1), 3)


def hit_rate(fault: Fault, samples: int, seed: int = 12345) -> dict[str, Any]:
    """The fraction of uniformly sampled cases on which `fault` shows: how rare the shape or
    value it needs is in the case space."""
    target = get(fault.target)
    draw = sampler(fault.target, target.max_numel, fault.pins)
    rng = random.Random(seed)
    ex = InProcessExecutor()
    jobs = [_job(fault, draw(rng)) for _ in range(samples)]
    failed = sum(o.failed for o in ex.evaluate(jobs))
    return {"samples": samples, "failed": failed, "rate": failed / samples}


def _smallest(path: str) -> dict[str, dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return {}
    return {f["fault"]: f for f in json.loads(p.read_text())["faults"] if f.get("size")}


def _read(path: str | None, option: str, what: str, parse: Any) -> Any:
    """`parse(document)` of the JSON file at `path`; None for no path or a missing file. Ends
    with a one-line error naming the file and `what` it should be, exit 2, when `parse` finds
    it is not that."""
    p = Path(path) if path else None
    if p is None or not p.exists():
        return None
    try:
        return parse(json.loads(p.read_text()))
    except (ValueError, KeyError, TypeError) as e:
        print(f"bench.bug_finding: {option} {path} is not {what} ({e!r}); name another one, or "
              f"pass {option} '' for none", file=sys.stderr)
        raise SystemExit(2) from None


def _known(path: str | None) -> dict[str, list[dict[str, Any]]]:
    """The smallest failing cases each fault had in an earlier run's results (`path`, this
    script's output), by fault name: the smallest of any bucket, then the smallest of each
    bucket where the results name them (older results do not). The bar a shrunk case is held to
    is the smallest case known, not only this run's."""
    def parse(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for f in doc["faults"]:
            entries = [f["smallest_known"]] if f.get("smallest_known") else []
            entries += list((f.get("smallest_known_by_bucket") or {}).values())
            # Each case once: the smallest of any bucket is the smallest of its own too.
            unique: dict[str, dict[str, Any]] = {}
            for e in entries:
                unique.setdefault(json.dumps(e["case"], sort_keys=True), e)
            if unique:
                out[f["fault"]] = list(unique.values())
        return out

    return _read(path, "--known", "a bench.bug_finding result", parse) or {}


def _recorded(path: str | None) -> dict[str, list[dict[str, Any]]]:
    """The recorded failing cases of `path` ({"cases": [{"fault", "source", "case"}]}) by
    fault name; none for no path or a missing file. Ends with a one-line error, exit 2, on a
    file that is not such a record."""
    def parse(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for entry in doc["cases"]:
            if not (isinstance(entry["case"], dict) and isinstance(entry["source"], str)):
                raise TypeError(f"entry for {entry['fault']!r} needs a case mapping and a source")
            out.setdefault(entry["fault"], []).append(entry)
        return out

    return _read(path, "--cases", 'a record of failing cases {"cases": [{"fault", "source", '
                 '"case"}]}', parse) or {}


def _failing_buckets(fault: Fault, case: dict[str, Any]) -> set[str] | None:
    """The failure buckets of `case` with the fault's kernel when it fails there and passes
    with the reference kernel; None otherwise."""
    ran = InProcessExecutor().evaluate([_job(fault, case)])[0]
    return ran.buckets() if ran.failed and _reference_passes(fault, case) else None


def _still_fails(fault: Fault, case: dict[str, Any]) -> bool:
    """`case` fails with the fault's kernel and passes with its reference kernel."""
    return _failing_buckets(fault, case) is not None


# A known failing case: (size, preference at equal size, source, case, its buckets).
Known = tuple[int, int, str, dict[str, Any], set[str]]


def _known_cases(fault: Fault, row: dict[str, Any], brute: dict[str, dict[str, Any]],
                 known: dict[str, list[dict[str, Any]]],
                 recorded: dict[str, list[dict[str, Any]]]) -> list[Known]:
    """Every failing case known for `fault`, with its buckets: this run's (each run's
    `buckets` noted on it), the brute-force result's (per bucket where it has them), an
    earlier run's and the recorded ones that still fail. At equal size the brute-force case is
    named, then this run's, then an earlier run's, then a recorded one."""
    size = get(fault.target).case_size
    seen: list[Known] = []
    for r in row["kfuzz_runs"] + row["uniform_runs"]:
        if r.get("size") is None:
            continue
        r["buckets"] = sorted(InProcessExecutor().evaluate([_job(fault, r["case"])])[0]
                              .buckets())
        if r.get("reference_passes"):
            seen.append((r["size"], 1, "kfuzz shrink" if "shrink" in r else "uniform sampling",
                         r["case"], set(r["buckets"])))
    b = brute.get(fault.name)
    if b and b.get("by_bucket"):
        seen += [(e["size"], 0, "brute force", e["case"], {name})
                 for name, e in b["by_bucket"].items() if e.get("reference_passes", True)]
    elif b:  # an older result: its one case, run to learn its buckets
        seen.append((b["size"], 0, "brute force", b["case"],
                     _failing_buckets(fault, b["case"]) or set()))
    for entry in known.get(fault.name, []):
        buckets = _failing_buckets(fault, entry["case"])
        if buckets is not None:
            source = entry["source"]
            source = source if source.endswith("(an earlier run)") else f"{source} (an earlier run)"
            seen.append((size(entry["case"]), 2, source, entry["case"], buckets))
    for entry in recorded.get(fault.name, []):
        buckets = _failing_buckets(fault, entry["case"])
        if buckets is not None:
            seen.append((size(entry["case"]), 3, entry["source"], entry["case"], buckets))
    return seen


def held_to_smallest(row: dict[str, Any], seen: list[Known]) -> None:
    """Set `row`'s smallest known case (any bucket) and smallest per bucket from `seen`, and
    hold each shrunk kfuzz run (its `buckets` noted) to the smallest known case of the bucket
    it fails in: of its buckets, the one whose smallest known case is smallest, noted as the
    run's `bucket`. The ratios go in row["kfuzz"]: `shrunk_over_smallest` (per bucket; None for
    a run failing in no bucket known), `shrunk_over_smallest_any` and `shrunk_buckets`."""
    def pick(entries: list[Known]) -> dict[str, Any]:
        size, _, source, case, _ = min(entries, key=lambda s: (s[0], s[1]))
        return {"size": size, "source": source, "case": case}

    if not seen:
        return
    row["smallest_known"] = overall = pick(seen)
    names = sorted(set().union(*(s[4] for s in seen)))
    by_bucket = {b: pick([s for s in seen if b in s[4]]) for b in names}
    row["smallest_known_by_bucket"] = by_bucket
    shrunk = [r for r in row["kfuzz_runs"] if "shrink" in r]
    if not shrunk:
        return
    ratios: list[float | None] = []
    for r in shrunk:
        bars = sorted((by_bucket[b]["size"], b) for b in r.get("buckets", []) if b in by_bucket)
        r["bucket"] = bars[0][1] if bars else None
        ratios.append(round(r["size"] / bars[0][0], 2) if bars else None)
    row["kfuzz"].update(
        shrunk_over_smallest=ratios,
        shrunk_over_smallest_any=[round(r["size"] / overall["size"], 2) for r in shrunk],
        shrunk_buckets=[r["bucket"] for r in shrunk])


def worst_shrunk(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per fault with shrunk runs, its worst shrunk case against the smallest known case of its
    own bucket (None when a run fails in no bucket with a known case)."""
    out: dict[str, float | None] = {}
    for row in rows:
        ratios = row["kfuzz"].get("shrunk_over_smallest")
        if ratios:
            out[row["fault"]] = None if None in ratios else max(ratios)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = common.parser(__doc__, "bug_finding.json")
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help="search budget per run (default 60; 5 with --quick)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="runs per method and fault (default 5; 1 with --quick)")
    p.add_argument("--fault", action="append", metavar="NAME", help="only this fault")
    p.add_argument("--detect-only", action="store_true",
                   help="end each kfuzz run at its first failing case: detection only, no "
                        "shrinking (for many seeds)")
    p.add_argument("--plain-share", type=int, default=None, metavar="N",
                   help="one kfuzz case in N drawn plainly (default: kfuzz's own, "
                        f"{drawn.PLAIN_SHARE})")
    p.add_argument("--smallest", default=str(common.RESULTS / "smallest.json"), metavar="PATH",
                   help="brute-force smallest failing cases (bench.smallest's output)")
    p.add_argument("--cases", default=str(Path(__file__).with_name("known_cases.json")),
                   metavar="PATH",
                   help="failing cases found outside this benchmark, each counted as known once "
                        "it is checked to fail here (default: bench/known_cases.json; '' for "
                        "none)")
    p.add_argument("--known", default=str(common.RESULTS / "bug_finding.json"), metavar="PATH",
                   help="an earlier run's results: each fault's smallest failing case there "
                        "counts as known too, once it is checked to fail here (default: the "
                        "committed results; '' for none)")
    args = p.parse_args(argv)
    if args.plain_share is not None:
        if args.plain_share < 1:
            p.error(f"--plain-share {args.plain_share}: give N >= 1 (one case in N plain)")
        drawn.PLAIN_SHARE = args.plain_share
    common.single_thread()
    budget = args.budget or (5.0 if args.quick else 60.0)
    seeds = args.seeds or (1 if args.quick else 5)
    faults = [by_name(n) for n in args.fault] if args.fault else FAULTS
    if args.quick and not args.fault:
        faults = faults[:2]
    brute = _smallest(args.smallest)
    known = _known(args.known)
    recorded = _recorded(args.cases)
    rows = []
    for fault in faults:
        row: dict[str, Any] = {"fault": fault.name, "target": fault.target,
                               "kernel": fault.kernel, "oracle": fault.oracle,
                               "comparator": fault.comparator, "listed": fault.listed,
                               "pins": fault.pins, "needs": fault.needs,
                               "fixed": fixed_seed(fault),
                               "uniform_hit_rate": hit_rate(fault, 20 if args.quick else 200)}
        row["kfuzz_runs"] = [kfuzz(fault, seed, budget, args.detect_only)
                             for seed in range(seeds)]
        row["uniform_runs"] = [uniform(fault, seed, budget) for seed in range(seeds)]
        row["kfuzz"] = common.run_summary(row["kfuzz_runs"])
        row["uniform"] = common.run_summary(row["uniform_runs"])
        row["kfuzz_vs_uniform"] = _verdict(row["kfuzz"], row["uniform"])
        row["cases_ratio"] = cases_ratio(row["kfuzz"], row["uniform"])
        held_to_smallest(row, _known_cases(fault, row, brute, known, recorded))
        print(f"{fault.name:20} fixed {row['fixed']['detected']!s:5} kfuzz {row['kfuzz']} "
              f"uniform {row['uniform']} -> {row['kfuzz_vs_uniform']}", flush=True)
        rows.append(row)
    ratios = [(r["cases_ratio"], r["fault"]) for r in rows if r["cases_ratio"] is not None]
    worst = max(ratios, default=None)
    if worst:
        print(f"worst kfuzz/uniform median cases to detection: {worst[0]} ({worst[1]})")
    shrunk = worst_shrunk(rows)
    for name, ratio in shrunk.items():
        print(f"{name:20} worst shrunk / smallest of its bucket: {ratio}")
    common.write(args.out, {"mode": "quick" if args.quick else "full", "budget": budget,
                            "detect_only": args.detect_only, "plain_share": drawn.PLAIN_SHARE,
                            "seeds": seeds, "fixed_seeds": list(FIXED_SEEDS), "faults": rows,
                            "worst_cases_ratio": {"ratio": worst[0], "fault": worst[1]}
                            if worst else None,
                            "worst_shrunk_over_smallest": shrunk})


if __name__ == "__main__":
    main()

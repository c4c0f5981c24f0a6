"""Smallest failing case of each seeded fault, by brute force over a grid of small cases, overall
and per failure bucket.

For each fault of bench/seeded.py, the cases of its grid (small shapes crossed with value
distributions, index-set flags and seeds) run in order of size (`Target.case_size`, total
input elements). The first one that fails is the smallest failing grid case (all smaller grid
cases pass); it is checked against the correct kernel too (it must pass there). That is the
"smallest known failing case" that shrunk cases are compared with; the bug-finding benchmark
lowers it further if a search ever shrinks to something smaller.

A failing case falls in one or more failure buckets (`Outcome.buckets()`: the output, the
failure kind and how far off it is, such as `y:mismatch:wrong` against `y:mismatch:rounding`).
kfuzz's shrinker keeps a smaller case only when it fails in a bucket of the case it started
from, so a shrunk case is held to the smallest case of its own bucket. The search therefore goes
on past the first failure and records, per bucket, the first (smallest) grid case that fails in
it (`by_bucket`).

How far it goes on: up to `REACH` times the size of the first failing case, or the whole grid
when that comes first. Running every grid case would cost tens of minutes on the largest grid
(bf16_accumulate's 2**18-element cases), and a bucket that first shows at more than `REACH`
times the smallest failure says nothing a 2x bar on shrunk sizes could use; a bucket first seen
beyond the reach has no brute-force entry here, and the bug-finding benchmark holds it to the
smallest case it knows from its other sources. `searched_to_size` says how far each fault's
search went; a fault's whole grid ran when it equals the largest grid size.

    python -m bench.smallest [--quick] [--fault NAME ...]
"""

from __future__ import annotations

import time
from typing import Any

from kfuzz.cases.materialise import stamp
from kfuzz.execute.executor import InProcessExecutor, Job, Outcome
from kfuzz.targets.registry import get

from bench import common
from bench.seeded import FAULTS, Fault, by_name

QUICK_LIMIT = 300
# How far past the first failing case the search goes, as a multiple of its size.
REACH = 16


def _first_per_bucket(fault: Fault, cases: list[dict[str, Any]], limit: int | None
                      ) -> tuple[list[tuple[int, dict[str, Any], Outcome]], int, int | None]:
    """Run `cases` (sorted by size) in order: the first failure and each later case that fails
    in a bucket not seen before, as (index, case, outcome); the cases run and the size the
    search went up to (None when nothing ran)."""
    target = get(fault.target)
    oracle = fault.oracle or target.default_oracle
    ex = InProcessExecutor()
    found: list[tuple[int, dict[str, Any], Outcome]] = []
    seen: set[str] = set()
    ran = 0
    reach: int | None = None
    top: int | None = None
    for i, case in enumerate(cases[:limit]):
        size = target.case_size(case)
        if reach is not None and size > reach:
            break
        ran, top = i + 1, size
        outcome = ex.evaluate([Job(fault.target, fault.kernel, oracle, case, fault.comparator)])[0]
        if outcome.failed and not outcome.buckets() <= seen:
            found.append((i, case, outcome))
            seen |= outcome.buckets()
            reach = REACH * size if reach is None else reach
    return found, ran, top


def smallest_failing(fault: Fault, *, limit: int | None = None) -> dict[str, Any]:
    """Run `fault`'s grid smallest first (at most `limit` cases), up to `REACH` times the first
    failing case's size. Returns that first failing case's size and case (None when no grid
    case fails within `limit` cases), how many grid cases ran before it (`tried`) and how many
    are smaller than it, whether the correct kernel passes it, its worst ratio; per failure
    bucket (`by_bucket`), the same for the smallest grid case failing in it; the cases run in
    all (`searched`), the largest size run (`searched_to_size`) and the seconds."""
    target = get(fault.target)
    # Built as the search builds its cases (position-stable materialisation).
    cases = [stamp({**c, **fault.pins}) for c in fault.grid()]
    cases.sort(key=target.case_size)
    oracle = fault.oracle or target.default_oracle
    start = time.perf_counter()
    found, ran, top = _first_per_bucket(fault, cases, limit)
    out: dict[str, Any] = {
        "fault": fault.name, "target": fault.target, "kernel": fault.kernel,
        "grid_cases": len(cases), "tried": found[0][0] + 1 if found else ran,
        "seconds": round(time.perf_counter() - start, 2),
        "size": None, "case": None, "reference_passes": None,
        "searched": ran, "searched_to_size": top, "reach": REACH, "by_bucket": {},
    }
    ex = InProcessExecutor()
    for i, case, outcome in found:
        size = target.case_size(case)
        ref = ex.evaluate([Job(fault.target, fault.reference, oracle, case, fault.comparator)])[0]
        entry = {"size": size, "case": case, "tried": i + 1, "reference_passes": not ref.failed,
                 "buckets": sorted(outcome.buckets()), "ratio": outcome.worst_ratio()}
        for bucket in outcome.buckets():
            out["by_bucket"].setdefault(bucket, entry)
    if found:
        first = out["by_bucket"][min(found[0][2].buckets())]
        out.update(size=first["size"], case=first["case"],
                   reference_passes=first["reference_passes"],
                   smaller_cases_passing=sum(target.case_size(c) < first["size"] for c in cases),
                   ratio=first["ratio"])
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = common.parser(__doc__, "smallest.json")
    p.add_argument("--fault", action="append", metavar="NAME",
                   help="only this fault (repeatable; default all)")
    args = p.parse_args(argv)
    common.single_thread()
    faults = [by_name(n) for n in args.fault] if args.fault else FAULTS
    results = []
    for fault in faults:
        r = smallest_failing(fault, limit=QUICK_LIMIT if args.quick else None)
        buckets = ", ".join(f"{b} {e['size']}" for b, e in sorted(r["by_bucket"].items()))
        print(f"{fault.name:24} size {r['size']} after {r['tried']} cases; by bucket: "
              f"{buckets or '-'} ({r['searched']} cases to size {r['searched_to_size']}, "
              f"{r['seconds']} s)", flush=True)
        results.append(r)
    common.write(args.out, {"mode": "quick" if args.quick else "full", "faults": results})


if __name__ == "__main__":
    main()

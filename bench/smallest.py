"""Smallest failing case of each seeded fault, by brute force over a grid of small cases.

For each fault of bench/seeded.py, every case of its grid (small shapes crossed with value
distributions, index-set flags and seeds) runs in order of size (`Target.case_size`, total
input elements) until one fails; all smaller grid cases pass. The failing case is checked
against the correct kernel too (it must pass there). The result is the "smallest known failing
case" that shrunk cases are compared with; the bug-finding benchmark lowers it further if a
search ever shrinks to something smaller.

    python -m bench.smallest [--quick] [--fault NAME ...]
"""

from __future__ import annotations

import time
from typing import Any

from kfuzz.cases.materialise import stamp
from kfuzz.execute.executor import InProcessExecutor, Job
from kfuzz.targets.registry import get

from bench import common
from bench.seeded import FAULTS, Fault, by_name

QUICK_LIMIT = 300


def smallest_failing(fault: Fault, *, limit: int | None = None) -> dict[str, Any]:
    """Run `fault`'s grid smallest first until a case fails. Returns the size and case found
    (None when no grid case fails within `limit` cases), how many grid cases ran and how many
    are smaller than the one found, whether the correct kernel passes it, and the seconds."""
    target = get(fault.target)
    # Built as the search builds its cases (position-stable materialisation).
    cases = [stamp({**c, **fault.pins}) for c in fault.grid()]
    cases.sort(key=target.case_size)
    oracle = fault.oracle or target.default_oracle
    ex = InProcessExecutor()
    start = time.perf_counter()
    found: dict[str, Any] | None = None
    tried = 0
    for case in cases[:limit]:
        tried += 1
        outcome = ex.evaluate([Job(fault.target, fault.kernel, oracle, case, fault.comparator)])[0]
        if outcome.failed:
            found = case
            break
    out: dict[str, Any] = {
        "fault": fault.name, "target": fault.target, "kernel": fault.kernel,
        "grid_cases": len(cases), "tried": tried, "seconds": round(time.perf_counter() - start, 2),
        "size": None, "case": None, "reference_passes": None,
    }
    if found is not None:
        size = target.case_size(found)
        ref = ex.evaluate([Job(fault.target, fault.reference, oracle, found, fault.comparator)])[0]
        out.update(size=size, case=found, reference_passes=not ref.failed,
                   smaller_cases_passing=sum(target.case_size(c) < size for c in cases),
                   ratio=outcome.worst_ratio())
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
        print(f"{fault.name:20} size {r['size']} after {r['tried']} cases, {r['seconds']} s")
        results.append(r)
    common.write(args.out, {"mode": "quick" if args.quick else "full", "faults": results})


if __name__ == "__main__":
    main()

"""What a campaign's cases covered: how many cases drew each dtype, size class, value regime,
special value and index layout, and which of the target's declared ones no case reached. A
green run then says what it exercised (`kfuzz run` prints a line per target, `--json` and the
runs table keep the counts, `kfuzz report` shows a table).

Read from the case descriptions alone (no tensor is looked at), so counting costs nothing next
to running a case. Size classes are by a case's input elements against the target's element
bound (`max_numel`, per tensor): "small" under 1/256 of it, "large" from 1/4 of it (production
shapes), "middle" between; "tile edge" counts cases with a dimension one below, at or one above
a multiple of 16 (from 15 up), where tail-tile faults live.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from kfuzz.cases.strategies import PADDINGS, SPECIALS, regimes_in

SIZE_CLASSES = ("small", "middle", "large")
_INDEX_FLAGS = ("sorted", "duplicates", "ragged", "out_of_range")


def _dims(case: Mapping[str, Any]) -> list[int]:
    shape = case.get("shape")
    if isinstance(shape, list):
        return [d for d in shape if isinstance(d, int)]
    # Targets declared with kfuzz.target keep each symbol's size as a top-level field.
    return [v for k, v in case.items() if isinstance(v, int) and not isinstance(v, bool)
            and k != "seed"]


def _index_sets(case: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(case, Mapping):
        if {"n_rows", "k", "n_valid"} <= set(case):
            yield case
        for value in case.values():
            yield from _index_sets(value)


class Coverage:
    """Counts over the cases a campaign ran (`add`), for a target with `specials` (input ->
    the special values its contract allows) and element bound `max_numel`. `size`: case ->
    input elements from the description (`Target.size`); None (a target that can size a case
    only by building its inputs) leaves size classes out rather than build every case twice."""

    def __init__(self, size: Any, max_numel: int,
                 specials: Mapping[str, Iterable[str]] | None = None) -> None:
        self.size, self.max_numel = size, max(1, max_numel)
        self.offered = {s for values in (specials or {}).values() for s in values}
        self.cases = 0
        self.counts: dict[str, Counter[str]] = {
            "dtype": Counter(), "size": Counter(), "regime": Counter(), "special": Counter(),
            "index": Counter()}

    def add(self, case: Mapping[str, Any], times: int = 1) -> None:
        """Count one case run, or `times` cases that differ from `case` only in their seed
        (a batch: the seed changes none of the counts)."""
        self.cases += times
        c = self.counts
        for key, value in case.items():
            if (key == "dtype" or key.endswith("_dtype")) and isinstance(value, str):
                c["dtype"][value] += times
        elements = -1
        if self.size is not None:
            try:
                elements = int(self.size(dict(case)))
            except Exception:  # a case its target cannot size (a user's target): no class
                pass
        if elements >= 0:
            share = elements / self.max_numel
            size_class = "small" if share < 1 / 256 else "large" if share >= 0.25 else "middle"
            c["size"][size_class] += times
        if any(d >= 15 and d % 16 in (15, 0, 1) for d in _dims(case)):
            c["size"]["tile edge"] += times
        for name in regimes_in(case):
            c["special" if name in SPECIALS else "regime"][name] += times
        for spec in _index_sets(case):
            c["index"][f"padding {spec.get('padding', 'end')}"] += times
            for flag in _INDEX_FLAGS:
                if spec.get(flag):
                    c["index"][flag.replace("_", " ")] += times
            if spec.get("window"):
                c["index"]["window"] += times

    def never_reached(self) -> list[str]:
        """What the target declares or offers that no case reached: size classes, the special
        values its inputs' contracts allow, index padding layouts (where it has index sets)."""
        if not self.cases:
            return []
        c = self.counts
        missing = [s for s in SIZE_CLASSES if c["size"] and not c["size"][s]]
        missing += [s for s in SPECIALS if s in self.offered and not c["special"][s]]
        if c["index"]:
            missing += [f"padding {p}" for p in PADDINGS if not c["index"][f"padding {p}"]]
        return missing

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: {"cases", one {name: count} per group, "never_reached": [...]}."""
        out: dict[str, Any] = {"cases": self.cases}
        order = {name: i for i, name in enumerate((*SIZE_CLASSES, "tile edge"))}
        out.update({group: dict(sorted(counts.items(), key=lambda kv: (order.get(kv[0], 9), kv[0])))
                    for group, counts in self.counts.items() if counts})
        out["never_reached"] = self.never_reached()
        return out


def coverage_line(coverage: Mapping[str, Any]) -> str:
    """One line of a campaign's coverage, e.g. "200 cases; dtype bfloat16 90, float16 110;
    size small 120, middle 60, large 20, tile edge 41; special nan 9; never reached: inf"."""
    parts = [f"{coverage.get('cases', 0)} cases"]
    for group in ("dtype", "size", "special", "index"):
        counts = coverage.get(group) or {}
        if counts:
            parts.append(f"{group} " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    regimes = coverage.get("regime") or {}
    if regimes:
        parts.append(f"{len(regimes)} value regimes")
    never = coverage.get("never_reached") or []
    parts.append("never reached: " + (", ".join(never) if never else "-"))
    return "; ".join(parts)

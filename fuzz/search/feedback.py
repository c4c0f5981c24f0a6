"""What the search learns from an outcome: the scores `hypothesis.target` climbs (`feedback`)
and the headline errors a raw failure showed (`raw_metrics`)."""

from __future__ import annotations

import math
from typing import Any

from kfuzz.execute.executor import Outcome


def raw_metrics(outcome: Outcome) -> dict[str, dict[str, Any]]:
    """Per output, the headline errors of an outcome (what a raw failure showed)."""
    keys = ("mismatches", "mismatch_ratio", "max_abs", "max_rel", "worst_over_allowed", "max_ulp")
    return {name: {k: m.get(k) for k in keys if k in m} for name, m in outcome.outputs.items()}


def feedback(outcome: Outcome) -> dict[str, float]:
    """What `hypothesis.target` climbs, per output: the mismatch ratio; the worst element's
    error as a fraction of what the comparator allows (log2, so that near misses climb toward
    failures); the largest ULP distance (log2); and what the target reports about the case
    (`Target.features`). A crash, hang or error scores 1 on its status."""
    if outcome.status not in ("pass", "fail"):
        return {outcome.status: 1.0}
    out: dict[str, float] = {f"feature:{k}": v for k, v in outcome.features.items()
                             if math.isfinite(v)}
    for name, m in outcome.outputs.items():
        out[name] = float(m["mismatch_ratio"])
        for key, label in (("worst_over_allowed", "headroom"), ("max_ulp", "ulp")):
            value = getattr(m, key, None)
            if isinstance(value, (int, float)) and value > 0:
                # Capped: an infinite error (a NaN or Inf mismatch) is as far as it goes.
                out[f"{name}:{label}"] = min(math.log2(value), 1024.0)
    return out

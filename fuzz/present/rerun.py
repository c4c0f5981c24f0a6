"""A stored finding's case run again for the report: its metrics now and the per-element
errors behind the report's histograms.

The corpus stores metrics, not tensors; the errors are recomputed through the executor
(`kfuzz.execute.executor.case_outputs`: same materialise, kernel and oracle path as a replay),
and measured as `kfuzz.judge.compare` measures them.
"""

from __future__ import annotations

from typing import Any

import torch
from kfuzz.judge.comparator import Comparator
from kfuzz.judge.compare import compare
from kfuzz.judge.stages import prepare
from kfuzz.judge.tolerance import ulp_size


def rerun(row: dict[str, Any], device: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Run a decoded findings row's case again (`kfuzz.store.rows.decode_row`), recording
    nothing.

    Args:
        row: the finding; its case must be a dict.
        device: where the kernel runs.

    Returns:
        (metrics by output, as `Metrics.to_dict()`; `element_errors` by output).

    Raises:
        KfuzzError: when the case cannot be run here (a target, plugin or kernel missing).
        Exception: whatever the kernel or oracle raises.
    """
    from kfuzz.execute.executor import Job, case_outputs
    from kfuzz.judge.comparator import with_overrides
    from kfuzz.targets import registry

    job = Job(row["target"], row["kernel"], row["oracle"], row["case"], row.get("comparator"),
              device, plugins=tuple(row.get("plugins") or ()))
    registry.load_recorded_plugins(job.plugins)  # the finding's, or their stand-ins
    target = registry.get(row["target"])
    actual, expected = case_outputs(job)
    metrics, errors = {}, {}
    for name in target.outputs:
        comparator = with_overrides(target.comparators[name], row.get("comparator"))
        metrics[name] = compare(actual[name], expected[name], comparator).to_dict()
        errors[name] = element_errors(actual[name], expected[name], comparator)
    return metrics, errors


def element_errors(actual: torch.Tensor, expected: torch.Tensor,
                   comparator: Comparator) -> dict[str, Any]:
    """Per-element errors of one output, as `kfuzz.judge.compare.compare` sees them: its first
    stage (`kfuzz.judge.stages.prepare`: the reference rounded to the output dtype when the
    comparator says so, both promoted to float64) and its ULP spacing
    (`kfuzz.judge.tolerance.ulp_size`).

    Returns {"abs", "rel", "ulp": 1-d float64 numpy arrays over the pairs finite on both
    sides (rel over those with a nonzero reference; ulp empty for a non-floating output),
    "nonfinite": the count of pairs left out, "bounds": {"abs", "rel", "ulp": the
    comparator's bound for that measure, or None}}. Raises ShapeMismatch when the shapes
    differ, TypeError for an operand compare does not take (not a tensor, complex)."""
    ops = prepare(actual, expected, comparator)
    cmp = ops.cmp
    finite = torch.isfinite(ops.a) & torch.isfinite(ops.e)
    diff = ops.diff[finite]
    e_abs = ops.e[finite].abs()
    nonzero = e_abs != 0
    rel = diff[nonzero] / e_abs[nonzero]
    if ops.dtype.is_floating_point:
        ulp = diff / ulp_size(e_abs, ops.dtype)
    else:
        ulp = torch.empty(0, dtype=torch.float64)
    bounds: dict[str, float | None] = {"abs": None, "rel": None, "ulp": None}
    if cmp.mode == "allclose":
        bounds.update(abs=cmp.atol or None, rel=cmp.rtol or None)
    elif cmp.mode == "ulp":
        bounds["ulp"] = cmp.ulp
    return {"abs": diff.numpy(), "rel": rel.numpy(), "ulp": ulp.numpy(),
            "nonfinite": int((~finite).sum()), "bounds": bounds}

"""kfuzz: property-based differential fuzzing of numerical kernels.

    import kfuzz

    kfuzz.check("ops.rmsnorm", kernel=my_rmsnorm)            # raises with the shrunk case
    result = kfuzz.fuzz("ops.rmsnorm", kernel=my_rmsnorm)     # findings, closest call
    mine = kfuzz.target("mine.gelu", inputs={"x": kfuzz.tensor("rows cols")}, oracle=gelu_fp64)

The names below are imported on first use, so that `import kfuzz` stays cheap (no torch, no
Hypothesis) for tools that only need the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "fuzz": "kfuzz.api", "check": "kfuzz.api", "run_case": "kfuzz.api", "Result": "kfuzz.api",
    "target": "kfuzz.targets.declare", "tensor": "kfuzz.targets.declare",
    "Target": "kfuzz.targets", "Variant": "kfuzz.targets", "OutputSpec": "kfuzz.targets",
    "register": "kfuzz.targets", "Comparator": "kfuzz.judge.comparator", "KfuzzError": "kfuzz.errors",
    "chain": "kfuzz.chains.declare", "stage": "kfuzz.chains.stages",
}
__all__ = ["Comparator", "KfuzzError", "OutputSpec", "Result", "Target", "Variant", "chain", "check",
           "fuzz", "register", "run_case", "stage", "target", "tensor"]

if TYPE_CHECKING:
    from kfuzz.api import Result, check, fuzz, run_case
    from kfuzz.chains.declare import chain
    from kfuzz.chains.stages import stage
    from kfuzz.errors import KfuzzError
    from kfuzz.judge.comparator import Comparator
    from kfuzz.targets.declare import target, tensor
    from kfuzz.targets.registry import OutputSpec, Target, Variant, register


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kfuzz' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""Triton kernels under test: RMSNorm, row softmax, DeepSeek-V4 sparse decode attention.

Triton is optional (`pip install -e '.[triton]'`). Importing this package never imports
triton; `unavailable_reason()` says whether it can be used and `load(module)` imports one of
the kernel modules, raising `kfuzz.kernels.availability.Unavailable` when triton is missing.

Where the kernels run follows their tensors: CUDA tensors run the compiled kernel on the GPU,
CPU tensors run Triton's interpreter (numpy) on the CPU. A process runs Triton one way, fixed
when triton is imported, so on a machine without CUDA this package sets TRITON_INTERPRET=1 at
import (before anything imports triton, and only when the variable is unset): a case found on
a GPU then replays on a CPU machine as it is. On a CUDA machine, replay on the CPU with
`TRITON_INTERPRET=1 kfuzz replay`; see `kfuzz.kernels.triton.launch`.

Interpreter numerics worth knowing (measured with triton 3.9.0, see tests/test_triton.py):
an FP32 -> BF16 cast inside a kernel truncates toward zero instead of rounding to nearest
even (also with `fp_downcast_rounding="rtne"`), FP32 -> FP16 casts round to nearest even,
and `rsqrt`, `1 / sqrt` and `div_rn(1, sqrt_rn(x))` are all numpy's `1 / np.sqrt(x)`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

import torch
from kfuzz.kernels.availability import Unavailable

INSTALL_HINT = "pip install -e '.[triton]'"

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


def unavailable_reason() -> str | None:
    """Why the Triton kernels cannot be used here, or None when they can.

    Takes: nothing. Returns: a one-line reason naming the fix, or None. Raises: nothing.
    Cheap: looks for the package without importing it.
    """
    if importlib.util.find_spec("triton") is None:
        return f"triton is not installed ({INSTALL_HINT})"
    return None


def load(module: str) -> ModuleType:
    """Import `kfuzz.kernels.triton.<module>`, which imports triton.

    Takes: module, e.g. "rmsnorm".
    Returns: the module.
    Raises: Unavailable when triton is missing or fails to import.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise Unavailable(reason)
    try:
        return importlib.import_module(f"kfuzz.kernels.triton.{module}")
    except ImportError as exc:
        raise Unavailable(f"triton failed to import: {type(exc).__name__}: {exc} ({INSTALL_HINT})") from None

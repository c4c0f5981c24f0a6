"""Array adapters: kernels and oracles that take and return NumPy or JAX arrays.

A variant declared with `variant(fn, arrays="numpy")` (or "jax") is called with each input
tensor as an array of that kind and its scalar parameters unchanged; what it returns (an
array, a tuple or list of them, or a dict by output name) comes back as CPU tensors moved to
the inputs' device, before kfuzz checks the output contract (names, shapes, dtypes).

NumPy has no BF16 or FP8 types: those travel as `ml_dtypes` arrays (`ml_dtypes.bfloat16`,
`float8_e4m3fn`, `float8_e5m2`), a bit view of the tensor, no rounding either way. NumPy
inputs share the tensors' memory (a kernel that writes into one is caught as writing into
its input); JAX arrays are copies, in JAX's own dtype rules (64-bit inputs become 32-bit
unless `jax_enable_x64` is set). torch is imported by the caller already; NumPy, ml_dtypes
and JAX are imported on the first conversion that needs them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch

# torch dtypes NumPy lacks -> the ml_dtypes type of the same bits, by name.
_ML_DTYPES = {torch.bfloat16: "bfloat16", torch.float8_e4m3fn: "float8_e4m3fn",
              torch.float8_e5m2: "float8_e5m2"}
_BITS = {1: (torch.uint8, "uint8"), 2: (torch.int16, "int16")}
# ... and back, by the ml_dtypes name.
_LACKING = {name: dtype for dtype, name in _ML_DTYPES.items()}


def to_numpy(tensor: torch.Tensor) -> Any:
    """`tensor` as a NumPy array on the CPU, the same bits (BF16 and FP8 as `ml_dtypes`
    arrays). Shares memory with a contiguous CPU tensor."""
    import numpy as np

    cpu = tensor.detach().cpu()
    if cpu.dtype not in _ML_DTYPES:
        return cpu.numpy()
    import ml_dtypes

    as_int, as_np = _BITS[cpu.element_size()]
    return cpu.contiguous().view(as_int).numpy().view(np.dtype(as_np)).view(
        getattr(ml_dtypes, _ML_DTYPES[cpu.dtype]))


def to_jax(tensor: torch.Tensor) -> Any:
    """`tensor` as a JAX array on JAX's default device (a copy)."""
    import jax.numpy as jnp

    return jnp.asarray(to_numpy(tensor))


def to_torch(array: Any, device: torch.device | str = "cpu") -> Any:
    """A NumPy or JAX array (or NumPy scalar) as a tensor on `device`, the same bits; a tensor
    is returned as it is and anything else unchanged (the output contract judges it)."""
    import numpy as np

    if isinstance(array, torch.Tensor):
        return array
    if not isinstance(array, (np.ndarray, np.generic)):
        if not _is_jax_array(array):
            return array
        array = np.array(array)  # a writable host copy
    array = np.asarray(array)
    flags = array.flags
    if not flags.writeable or not flags.c_contiguous:
        array = np.ascontiguousarray(array).copy()
    name = dtype_name(array.dtype)
    if name in _LACKING:
        as_int, as_np = _BITS[array.dtype.itemsize]
        tensor = torch.from_numpy(array.view(np.dtype(as_np))).view(_LACKING[name])
    else:
        tensor = torch.from_numpy(array)
    return tensor if getattr(device, "type", device) == "cpu" else tensor.to(device)


@functools.lru_cache(maxsize=64)
def dtype_name(dtype: Any) -> str:
    """`dtype.name` of a NumPy dtype, looked up once: NumPy computes the name on every read,
    which costs more than a small kernel's call."""
    return str(dtype.name)


def _is_jax_array(value: Any) -> bool:
    return type(value).__module__.split(".")[0] in ("jax", "jaxlib")


CONVERT: dict[str, Callable[[torch.Tensor], Any]] = {"numpy": to_numpy, "jax": to_jax}


def call(fn: Callable[..., Any], arrays: str, kwargs: Mapping[str, Any],
         params: Mapping[str, Any]) -> Any:
    """Call `fn` with each tensor of `kwargs` converted to `arrays` ("numpy" or "jax"), the
    other arguments and `params` as they are, and return what it returns with its arrays as
    tensors on the inputs' device (a tuple or list stays a tuple, a dict a dict)."""
    convert = CONVERT[arrays]
    device: torch.device | str = "cpu"
    converted: dict[str, Any] = {}
    for name, value in kwargs.items():
        if isinstance(value, torch.Tensor):
            device = value.device
            converted[name] = convert(value)
        else:
            converted[name] = value
    result = fn(**converted, **params)
    if isinstance(result, Mapping):
        return {name: to_torch(v, device) for name, v in result.items()}
    if isinstance(result, (tuple, list)):
        return tuple(to_torch(v, device) for v in result)
    return to_torch(result, device)

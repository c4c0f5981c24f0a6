"""Kernels of third-party libraries for the built-in targets: ONNX Runtime's CPU kernels
(`ort_*`, extra `onnxruntime`) and JAX on XLA's CPU backend (`jax_*`, extra `jax`).

Each is a `variant` naming its kernel as "module:function" (imported on its first call, so
declaring the targets imports neither library), with the arrays it takes (NumPy for ONNX
Runtime, JAX arrays for JAX) and the dtypes it implements. Without the library installed the
variant is still listed; running it stops with one line naming the kernel and the extra to
install (`KernelUnavailable`), and `run --all` skips it.
"""

from __future__ import annotations

from typing import Any

from kfuzz.errors import KernelUnavailable
from kfuzz.targets.declare import variant
from kfuzz.targets.specs import Reference

# ONNX Runtime's CPU provider has no BF16 kernel for these ops (1.32: "NOT_IMPLEMENTED").
ORT_DTYPES = ("float32", "float16")


class _Guarded:
    """A kernel reference whose `Unavailable` (a library not installed) becomes
    KernelUnavailable naming the target and kernel."""

    def __init__(self, target: str, name: str, ref: str) -> None:
        self.target, self.name, self.ref = target, name, ref
        self.fn = Reference(ref, "kernel")
        self.__name__ = self.__qualname__ = name

    def __call__(self, **kwargs: Any) -> Any:
        from kfuzz.kernels.availability import Unavailable

        try:
            return self.fn(**kwargs)
        except Unavailable as exc:
            raise KernelUnavailable(f"{self.target} kernel {self.name!r} cannot run here: "
                                    f"{exc}") from None


def ort(target: str, name: str, function: str, doc: str,
        dtypes: tuple[str, ...] = ORT_DTYPES) -> dict[str, Any]:
    """{name: an ONNX Runtime variant} running `kfuzz.kernels.onnxruntime.<function>` on
    `dtypes` (those of ORT_DTYPES that the target draws)."""
    ref = f"kfuzz.kernels.onnxruntime:{function}"
    return {name: variant(_Guarded(target, name, ref),
                          f"ONNX Runtime CPU {doc}; NumPy arrays, {'|'.join(dtypes)} only",
                          arrays="numpy", dtypes=dtypes)}


def jax(target: str, function: str, doc: str, bucketed: bool = False) -> dict[str, Any]:
    """{jax_<function>: eager, jax_<function>_jit: jitted} JAX variants of
    `kfuzz.kernels.jax.<function>`; with `bucketed`, also jax_<function>_jit_pow2: jitted on
    inputs padded up to powers of two (`bucketed=True`, a parameter of the kernel)."""
    out = {}
    for suffix, how in (("", "eager"), ("_jit", "under jax.jit")):
        name = f"jax_{function}{suffix}"
        out[name] = variant(_Guarded(target, name, f"kfuzz.kernels.jax:{function}{suffix}"),
                            f"JAX (XLA CPU) {doc}, {how}", arrays="jax")
    if bucketed:
        name = f"jax_{function}_jit_pow2"
        out[name] = variant(_Guarded(target, name, f"kfuzz.kernels.jax:{function}_jit"),
                            f"JAX (XLA CPU) {doc}, under jax.jit on inputs padded up to powers "
                            "of two (one compilation per bucket)", arrays="jax", bucketed=True)
    return out

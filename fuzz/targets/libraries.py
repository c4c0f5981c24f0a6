"""Kernels of third-party libraries for the built-in targets: ONNX Runtime's CPU kernels
(`ort_*`, extra `onnxruntime`) and JAX on XLA's CPU backend (`jax_*`, extra `jax`).

Each is a `variant` naming its kernel as "module:function" (imported on its first call, so
declaring the targets imports neither library), with the arrays it takes (NumPy for ONNX
Runtime, JAX arrays for JAX), the dtypes it implements and the extra it needs
(`Variant.library`): `run --all` fuzzes each of them as an entry of its own,
`TARGET@KERNEL`. Without the library installed the variant is still listed; a campaign of it
stops before its first case with one line naming the kernel and the extra to install
(`require`, `KernelUnavailable`), and `run --all` reports it skipped with that line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kfuzz.errors import KernelUnavailable
from kfuzz.targets.declare import variant
from kfuzz.targets.specs import Reference

if TYPE_CHECKING:
    from kfuzz.targets.registry import Variant

# ONNX Runtime's CPU provider has no BF16 kernel for these ops (1.32: "NOT_IMPLEMENTED").
ORT_DTYPES = ("float32", "float16")
# Each extra's modules that its kernels import.
LIBRARIES = {"onnxruntime": ("onnx", "onnxruntime"), "jax": ("jax",)}


def missing(library: str) -> str | None:
    """Why the kernels of extra `library` (a key of LIBRARIES) cannot run here, naming the
    extra to install; None when they can."""
    for module in LIBRARIES[library]:
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is not installed; pip install 'kfuzz[{library}]'"
    return None


def require(target: str, kernel: Variant) -> None:
    """Raises KernelUnavailable, naming the target, the kernel and the extra to install, when
    `kernel` is a library kernel whose library is not installed here."""
    why = missing(kernel.library) if kernel.library in LIBRARIES else None
    if why is not None:
        raise KernelUnavailable(f"{target} kernel {kernel.name!r} cannot run here: {why}")


class _Guarded:
    """A kernel reference whose `Unavailable` (a library not installed) becomes
    KernelUnavailable naming the target and kernel."""

    def __init__(self, target: str, name: str, ref: str) -> None:
        self.target, self.name, self.ref = target, name, ref
        self.fn = Reference(ref, "kernel")
        self.__name__ = self.__qualname__ = name

    def __call__(self, **kwargs: Any) -> Any:
        try:
            return self.fn(**kwargs)
        except Exception as exc:
            from kfuzz.kernels.availability import Unavailable  # only when it raised

            if not isinstance(exc, Unavailable):
                raise
            raise KernelUnavailable(f"{self.target} kernel {self.name!r} cannot run here: "
                                    f"{exc}") from None


def ort(target: str, name: str, function: str, doc: str,
        dtypes: tuple[str, ...] = ORT_DTYPES) -> dict[str, Any]:
    """{name: an ONNX Runtime variant} running `kfuzz.kernels.onnxruntime.<function>` on
    `dtypes` (those of ORT_DTYPES that the target draws)."""
    ref = f"kfuzz.kernels.onnxruntime:{function}"
    return {name: variant(_Guarded(target, name, ref),
                          f"ONNX Runtime CPU {doc}; NumPy arrays, {'|'.join(dtypes)} only; "
                          "needs kfuzz[onnxruntime]",
                          arrays="numpy", dtypes=dtypes, library="onnxruntime")}


def jax(target: str, function: str, doc: str, bucketed: bool = False) -> dict[str, Any]:
    """{jax_<function>: eager, jax_<function>_jit: jitted} JAX variants of
    `kfuzz.kernels.jax.<function>`; with `bucketed`, also jax_<function>_jit_pow2: jitted on
    inputs padded up to powers of two (`bucketed=True`, a parameter of the kernel). Each takes
    every dtype the target draws: where XLA raises on one under jax.jit (FP16 attention on the
    CPU, docs/findings.md), that is a defect to find, not a dtype to leave out."""
    out = {}
    for suffix, how in (("", "eager"), ("_jit", "under jax.jit")):
        name = f"jax_{function}{suffix}"
        out[name] = variant(_Guarded(target, name, f"kfuzz.kernels.jax:{function}{suffix}"),
                            f"JAX (XLA CPU) {doc}, {how}; needs kfuzz[jax]", arrays="jax",
                            library="jax")
    if bucketed:
        name = f"jax_{function}_jit_pow2"
        out[name] = variant(_Guarded(target, name, f"kfuzz.kernels.jax:{function}_jit"),
                            f"JAX (XLA CPU) {doc}, under jax.jit on inputs padded up to powers "
                            "of two (one compilation per bucket); needs kfuzz[jax]",
                            arrays="jax", library="jax", bucketed=True)
    return out

"""JAX kernels on XLA's CPU backend, eager and `jax.jit`-compiled, as kfuzz kernels.

They take and return JAX arrays (`variant(..., arrays="jax")`) with the signatures of the
`ops.*` targets. `jax.jit` compiles once per input shape and dtype; the jitted functions are
built on first use, so that importing this module imports no JAX until a kernel runs.
"""

from __future__ import annotations

import functools
from typing import Any

from kfuzz.kernels.availability import Unavailable


def _jax() -> Any:
    try:
        import jax
    except ImportError:
        raise Unavailable("jax is not installed; pip install 'kfuzz[jax]'") from None
    return jax


def softmax(x: Any) -> Any:
    """jax.nn.softmax over the last axis."""
    return _jax().nn.softmax(x, axis=-1)


def rmsnorm(x: Any, weight: Any, *, eps: float) -> Any:
    """RMSNorm in jax.numpy: upcast to FP32, x * rsqrt(mean(x^2) + eps) * weight, rounded once
    to x's dtype."""
    jax = _jax()
    jnp = jax.numpy
    xf = x.astype(jnp.float32)
    inv = jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
    return (xf * inv * weight.astype(jnp.float32)).astype(x.dtype)


@functools.cache
def _jitted(name: str) -> Any:
    jax = _jax()
    fn = {"softmax": softmax, "rmsnorm": rmsnorm}[name]
    return jax.jit(fn, static_argnames=("eps",) if name == "rmsnorm" else ())


def softmax_jit(x: Any) -> Any:
    """jax.jit(jax.nn.softmax) over the last axis: XLA-compiled once per shape and dtype."""
    return _jitted("softmax")(x)


def rmsnorm_jit(x: Any, weight: Any, *, eps: float) -> Any:
    """The jax.numpy RMSNorm under jax.jit (eps static): compiled once per shape, dtype, eps."""
    return _jitted("rmsnorm")(x, weight, eps=float(eps))


# Kernel function -> its source as a reproducer writes it (`kfuzz corpus export --standalone`):
# the same computation as the function above, with jax and jnp imported.
SOURCES: dict[str, str] = {
    "softmax": "def kernel(x):\n    return jax.nn.softmax(x, axis=-1)\n",
    "rmsnorm": ("def kernel(x, weight, *, eps):\n"
                "    xf = x.astype(jnp.float32)\n"
                "    inv = jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)\n"
                "    return (xf * inv * weight.astype(jnp.float32)).astype(x.dtype)\n"),
}
JITTED = {"softmax_jit": ("softmax", ()), "rmsnorm_jit": ("rmsnorm", ("eps",))}

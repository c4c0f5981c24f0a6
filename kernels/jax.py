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


def attention(q: Any, k: Any, v: Any, *, causal: bool, scale: float) -> Any:
    """jax.nn.dot_product_attention on [B, H, L, D] tensors (transposed to its [B, L, H, D]
    at the boundary), is_causal from `causal`."""
    jax = _jax()
    out = jax.nn.dot_product_attention(q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3),
                                       v.transpose(0, 2, 1, 3), scale=scale, is_causal=causal)
    return out.transpose(0, 2, 1, 3)


def gqa(q: Any, k: Any, v: Any, *, causal: bool, scale: float) -> Any:
    """jax.nn.dot_product_attention with fewer key/value heads than query heads (it shares
    key/value head h // G among query heads h, as ops.gqa defines) on [B, H, L, D] tensors;
    causal as a bottom-right mask (query i attends keys j <= i + Lk - Lq), which its
    `is_causal` (top-left) is not when there is a past."""
    jax = _jax()
    jnp = jax.numpy
    t, s = q.shape[2], k.shape[2]
    mask = jnp.tril(jnp.ones((t, s), dtype=bool), k=s - t)[None, None] if causal else None
    out = jax.nn.dot_product_attention(q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3),
                                       v.transpose(0, 2, 1, 3), scale=scale, mask=mask)
    return out.transpose(0, 2, 1, 3)


def gqa_jit(q: Any, k: Any, v: Any, *, causal: bool, scale: float) -> Any:
    """`gqa` under jax.jit (causal and scale static): compiled once per shape and dtype."""
    return _jitted("gqa")(q, k, v, causal=bool(causal), scale=float(scale))


@functools.cache
def _jitted(name: str) -> Any:
    """The jitted function `name`; its `_cache_size()` counts the compilations it holds."""
    fn = {"softmax": softmax, "rmsnorm": rmsnorm, "attention": attention, "gqa": gqa,
          "rmsnorm_n": _rmsnorm_n, "attention_n": _attention_n}[name]
    static = PADDED_STATIC[name] if name in PADDED_STATIC else JITTED[f"{name}_jit"][1]
    return _jax().jit(fn, static_argnames=static)


def bucket(n: int) -> int:
    """The bucket of a size: the least power of two at or above it."""
    return 1 << max(n - 1, 0).bit_length()


def _padded(x: Any, value: float) -> tuple[Any, tuple[int, ...]]:
    """x padded with `value` at the end of every axis up to its bucket, in NumPy (an eager JAX
    pad would compile once per shape itself); and x's shape, to slice the output back."""
    import numpy as np

    host = np.asarray(x)
    pads = [(0, bucket(n) - n) for n in host.shape]
    return _jax().numpy.asarray(np.pad(host, pads, constant_values=value)), host.shape


def _sliced(out: Any, shape: tuple[int, ...]) -> Any:
    import numpy as np

    return np.asarray(out)[tuple(slice(0, n) for n in shape)]


def softmax_jit(x: Any, *, bucketed: bool = False) -> Any:
    """jax.jit(jax.nn.softmax) over the last axis: XLA-compiled once per shape and dtype.
    `bucketed`: x padded up to a power of two along both axes (the columns with -inf, which
    take no weight; the rows with zeros) and the output sliced back, so that one compilation
    serves every shape of a bucket."""
    if not bucketed:
        return _jitted("softmax")(x)
    padded, shape = _padded(x, float("-inf"))
    return _sliced(_jitted("softmax")(padded), shape)


def _rmsnorm_n(x: Any, weight: Any, n: Any, *, eps: float) -> Any:
    """rmsnorm of x padded with zero columns: the mean of squares over the first n columns."""
    jnp = _jax().numpy
    xf = x.astype(jnp.float32)
    inv = _jax().lax.rsqrt(jnp.sum(xf * xf, axis=-1, keepdims=True) / n + eps)
    return (xf * inv * weight.astype(jnp.float32)).astype(x.dtype)


def rmsnorm_jit(x: Any, weight: Any, *, eps: float, bucketed: bool = False) -> Any:
    """The jax.numpy RMSNorm under jax.jit (eps static): compiled once per shape, dtype, eps.
    `bucketed`: x and weight padded with zeros up to powers of two, the mean taken over the
    true number of columns (a traced argument), the output sliced back."""
    if not bucketed:
        return _jitted("rmsnorm")(x, weight, eps=float(eps))
    padded, shape = _padded(x, 0.0)
    wide, _ = _padded(weight, 0.0)
    n = _jax().numpy.float32(shape[-1])
    return _sliced(_jitted("rmsnorm_n")(padded, wide, n, eps=float(eps)), shape)


def _attention_n(q: Any, k: Any, v: Any, kv_lengths: Any, scale: Any, *, causal: bool) -> Any:
    """attention of q, k, v padded along every axis: the keys at and past `kv_lengths` (one
    per batch) masked out by jax.nn.dot_product_attention's `key_value_seq_lengths`; `scale`
    traced, so that one compilation serves every head dim of a bucket."""
    out = _jax().nn.dot_product_attention(
        q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3),
        scale=scale, is_causal=causal, key_value_seq_lengths=kv_lengths)
    return out.transpose(0, 2, 1, 3)


def attention_jit(q: Any, k: Any, v: Any, *, causal: bool, scale: float,
                  bucketed: bool = False) -> Any:
    """jax.nn.dot_product_attention under jax.jit (causal and scale static).
    `bucketed`: q, k, v padded with zeros up to a power of two along every axis (batch, heads,
    sequence, head dim), the padded keys masked out, the output sliced back; causal stays top-
    left (row i attends keys 0 .. i), as unpadded, and a padded query row only adds a row that
    is dropped. The zeros of a padded head dim add nothing to q k^T, the scale is passed as it
    is, so one compilation per bucket (and causal) serves every shape in it."""
    if not bucketed:
        return _jitted("attention")(q, k, v, causal=bool(causal), scale=float(scale))
    import numpy as np

    jnp = _jax().numpy
    (pq, shape), (pk, _), (pv, _) = (_padded(x, 0.0) for x in (q, k, v))
    kv_lengths = jnp.asarray(np.full(pk.shape[0], k.shape[2], np.int32))
    out = _jitted("attention_n")(pq, pk, pv, kv_lengths, jnp.float32(scale), causal=bool(causal))
    return _sliced(out, shape)


# Kernel function -> its source as a reproducer writes it (`kfuzz corpus export --standalone`):
# the same computation as the function above, with jax and jnp imported.
SOURCES: dict[str, str] = {
    "softmax": "def kernel(x):\n    return jax.nn.softmax(x, axis=-1)\n",
    "rmsnorm": ("def kernel(x, weight, *, eps):\n"
                "    xf = x.astype(jnp.float32)\n"
                "    inv = jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)\n"
                "    return (xf * inv * weight.astype(jnp.float32)).astype(x.dtype)\n"),
    "attention": ("def kernel(q, k, v, *, causal, scale):\n"
                  "    out = jax.nn.dot_product_attention(\n"
                  "        q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3),\n"
                  "        scale=scale, is_causal=causal)\n"
                  "    return out.transpose(0, 2, 1, 3)\n"),
    "gqa": ("def kernel(q, k, v, *, causal, scale):\n"
            "    t, s = q.shape[2], k.shape[2]\n"
            "    mask = jnp.tril(jnp.ones((t, s), dtype=bool), k=s - t)[None, None] if causal else None\n"
            "    out = jax.nn.dot_product_attention(\n"
            "        q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3),\n"
            "        scale=scale, mask=mask)\n"
            "    return out.transpose(0, 2, 1, 3)\n"),
}
# Padded functions (the bucketed kernels jit them) -> their static arguments.
PADDED_STATIC = {"rmsnorm_n": ("eps",), "attention_n": ("causal",)}
# Jitted kernel function -> (the function it jits, its static arguments).
JITTED = {"softmax_jit": ("softmax", ()), "rmsnorm_jit": ("rmsnorm", ("eps",)),
          "attention_jit": ("attention", ("causal", "scale")),
          "gqa_jit": ("gqa", ("causal", "scale"))}

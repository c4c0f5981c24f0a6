#!/usr/bin/env python3
"""JAX: `jax.jit(jax.nn.dot_product_attention)` raises on FP16 inputs on the CPU, where the
eager call takes them.

Needs only NumPy and jax (run on XLA's CPU backend). Builds the smallest case (q = k = v of
shape [B, L, H, D] = [1, 2, 1, 1], FP16), computes float64 attention from its formula
(softmax(q k^T / sqrt(D)) v), checks the eager call against it, then runs the same call under
jax.jit. Exit 1 while the jitted call raises or is off, 0 once it matches the float64 values
within attention's FP16 tolerance (rtol 1e-2, atol 1e-2, what torch's fused attention
kernels pass).
"""

import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

RTOL, ATOL = 1e-2, 1e-2  # attention in FP16


def expected(q):
    """softmax(q k^T / sqrt(D)) v with q = k = v, in float64, per head."""
    x = np.asarray(q, np.float64)[0, :, 0, :]  # [L, D]
    scores = x @ x.T / np.sqrt(x.shape[-1])
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    return ((weights / weights.sum(axis=1, keepdims=True)) @ x)[None, :, None, :]


def check(name, out, want):
    got = np.asarray(out, np.float64)
    ok = out.dtype == jnp.float16 and np.allclose(got, want, rtol=RTOL, atol=ATOL)
    print(f"  {name}: {out.dtype} {got.ravel().tolist()} "
          f"{'matches' if ok else 'does NOT match'} float64 {want.ravel().tolist()}")
    return ok


def main():
    q = jnp.asarray(np.array([0.5, 1.25], np.float16).reshape(1, 2, 1, 1))
    want = expected(q)
    print(f"jax {jax.__version__} on {jax.default_backend()}, jax.nn.dot_product_attention, "
          f"q = k = v FP16 {list(q.shape)}")
    check("eager", jax.nn.dot_product_attention(q, q, q), want)
    try:
        out = jax.jit(jax.nn.dot_product_attention)(q, q, q)
    except Exception as exc:  # the defect: the FP16 call raises under jit
        print(f"FAIL: under jax.jit it raises {type(exc).__name__}: {exc}")
        return 1
    if check("jax.jit", out, want):
        print("OK: the jitted FP16 call runs and matches")
        return 0
    print("FAIL: the jitted FP16 call is off")
    return 1


if __name__ == "__main__":
    sys.exit(main())

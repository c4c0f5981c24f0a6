#!/usr/bin/env python3
"""JAX: `jax.jit(jax.nn.dot_product_attention)` raises on BF16 inputs on the CPU when one
query attends one key in one head of one batch, where the eager call takes them.

Needs only NumPy and jax (run on XLA's CPU backend). Builds the smallest case (q, k, v of
shape [B, L, H, D] = [1, 1, 1, 8], BF16), computes float64 attention from its formula (one
key: the output is v), checks the eager call against it, then runs the same call under
jax.jit. Exit 1 while the jitted call raises or is off, 0 once it matches the float64 values
within BF16's tolerance (rtol 1.6e-2, atol 1e-5). Two queries, two keys, two heads or two
batches run.
"""

import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

RTOL, ATOL = 1.6e-2, 1e-5  # BF16


def check(name, out, want):
    got = np.asarray(out, np.float64)
    ok = out.dtype == jnp.bfloat16 and np.allclose(got, want, rtol=RTOL, atol=ATOL)
    print(f"  {name}: {out.dtype} {got.ravel().tolist()} "
          f"{'matches' if ok else 'does NOT match'} float64 {want.ravel().tolist()}")
    return ok


def main():
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((1, 1, 1, 8)), jnp.bfloat16) for _ in range(3))
    want = np.asarray(v, np.float64)  # softmax over one key is 1: the output is v
    print(f"jax {jax.__version__} on {jax.default_backend()}, jax.nn.dot_product_attention, "
          f"q, k, v BF16 {list(q.shape)}")
    check("eager", jax.nn.dot_product_attention(q, k, v), want)
    try:
        out = jax.jit(jax.nn.dot_product_attention)(q, k, v)
    except Exception as exc:  # the defect: the BF16 call raises under jit
        print(f"FAIL: under jax.jit it raises {type(exc).__name__}: {exc}")
        return 1
    if check("jax.jit", out, want):
        print("OK: the jitted BF16 call runs and matches")
        return 0
    print("FAIL: the jitted BF16 call is off")
    return 1


if __name__ == "__main__":
    sys.exit(main())

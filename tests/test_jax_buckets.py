"""`jax_attention_jit_pow2`: jax.nn.dot_product_attention under jax.jit on q, k, v padded up
to powers of two. It gives what the unpadded jitted call gives (padded keys masked out, causal
still top-left with Lq != Lk, padded query rows dropped), and one compilation serves every
shape of a bucket, where the unpadded call compiles once per shape."""

from __future__ import annotations

import pytest
from kfuzz.api import run_case
from kfuzz.enums import Status

np = pytest.importorskip("numpy")
pytest.importorskip("jax")

# [B, H, Lq, Lk, D]: Lq < Lk, Lq > Lk, a head dim that is no power of two, one query.
SHAPES = [(1, 1, 3, 5, 8), (2, 3, 5, 3, 80), (1, 2, 9, 9, 96), (3, 5, 1, 7, 16),
          (2, 1, 17, 33, 64)]


def _sdpa(shape, causal: bool, dtype: str) -> dict:
    return {"shape": list(shape), "dtype": dtype, "causal": causal,
            "q": {"kind": "normal", "scale": 4.0}, "kv": {"kind": "normal", "scale": 1.0},
            "seed": 3, "materialise": 2}


def _qkv(shape, seed: int = 0):
    import jax.numpy as jnp

    b, h, q_len, k_len, d = shape
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.standard_normal(s).astype(np.float32) * 2)
                 for s in ((b, h, q_len, d), (b, h, k_len, d), (b, h, k_len, d)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
def test_bucketed_attention_equals_the_unpadded_jitted_call(shape, causal):
    # FP32: the same values up to the order of XLA's sums (a few ULPs). A padded key that
    # leaked into the softmax, or a causal mask aligned otherwise, is off by O(0.1).
    from kfuzz.kernels import jax as kjax

    q, k, v = _qkv(shape)
    scale = 1.0 / float(np.sqrt(shape[-1]))
    plain = np.asarray(kjax.attention_jit(q, k, v, causal=causal, scale=scale))
    padded = np.asarray(kjax.attention_jit(q, k, v, causal=causal, scale=scale, bucketed=True))
    assert padded.shape == plain.shape == (*shape[:3], shape[4])
    assert np.allclose(padded, plain, rtol=1e-5, atol=1e-6), np.abs(padded - plain).max()


@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_bucketed_attention_passes_ops_sdpa_like_the_unpadded_call(shape, causal, dtype):
    case = _sdpa(shape, causal, dtype)
    plain = run_case("ops.sdpa", case, kernel="jax_attention_jit")
    padded = run_case("ops.sdpa", case, kernel="jax_attention_jit_pow2")
    assert plain.status == padded.status == Status.PASS, padded.error


def test_bucketed_attention_compiles_once_per_bucket():
    from kfuzz.kernels import jax as kjax

    # Twelve shapes, all in bucket [2, 4, 8, 16, 128]: one compilation per causal value.
    shapes = [(2, 3, 5, 9, 80), (2, 4, 8, 16, 96), (2, 3, 6, 12, 128), (2, 4, 7, 10, 80),
              (2, 3, 5, 15, 96), (2, 4, 8, 11, 128), (2, 4, 6, 9, 80), (2, 3, 7, 16, 96),
              (2, 3, 8, 13, 128), (2, 4, 5, 14, 80), (2, 4, 7, 12, 96), (2, 3, 6, 10, 128)]
    padded, plain = kjax._jitted("attention_n"), kjax._jitted("attention")
    before = padded._cache_size(), plain._cache_size()
    for causal in (False, True):
        for shape in shapes:
            q, k, v = _qkv(shape)
            out = kjax.attention_jit(q, k, v, causal=causal, scale=shape[-1] ** -0.5,
                                     bucketed=True)
            assert out.shape == (*shape[:3], shape[4])
    assert padded._cache_size() - before[0] <= 2
    for shape in shapes[:4]:
        q, k, v = _qkv(shape)
        kjax.attention_jit(q, k, v, causal=False, scale=shape[-1] ** -0.5)
    assert plain._cache_size() - before[1] == 4  # unpadded: one per shape


def test_bucketed_attention_still_raises_on_float16():
    # The FP16 defect of jax.jit(jax.nn.dot_product_attention) on the CPU (docs/findings.md)
    # is the library's, padded or not.
    result = run_case("ops.sdpa", _sdpa((1, 1, 3, 5, 8), False, "float16"),
                      kernel="jax_attention_jit_pow2")
    assert result.status == Status.ERROR
    assert "'F16_F16_F32' is not supported by dot_general on CPU" in result.error

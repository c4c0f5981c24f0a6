"""The ONNX Runtime and JAX kernels of ops.rope and ops.sdpa, and the power-of-two buckets of
the jitted JAX kernels: each against the target's float64 oracle, through the target's own
variants (array conversion, dtypes, layouts at the boundary)."""

from __future__ import annotations

import pytest
import torch
from kfuzz.api import run_case
from kfuzz.enums import Status
from kfuzz.targets import registry

ROPE = {"shape": [7, 3, 16], "dtype": "float32", "x": {"kind": "normal", "scale": 1.0},
        "max_position": 65536, "base": 10000.0, "seed": 5, "materialise": 2}


def _sdpa(q_len: int, k_len: int, causal: bool, dtype: str = "float16") -> dict:
    return {"shape": [2, 3, q_len, k_len, 32], "dtype": dtype, "causal": causal,
            "q": {"kind": "normal", "scale": 1.0}, "kv": {"kind": "normal", "scale": 1.0},
            "seed": 9, "materialise": 2}


@pytest.mark.parametrize("kernel", ["ort_rope", "ort_rope_ms"])
def test_ort_rope_matches_float64_in_fp32(kernel):
    # Interleaved pairs, caches built from `base` in float64: FP32 within torch's tolerance,
    # positions up to 65535 included. A pairing or cache mistake is off by O(1).
    pytest.importorskip("onnxruntime")
    result = run_case("ops.rope", ROPE, kernel=kernel)
    assert result.status == Status.PASS, result.error


def test_ort_rope_late_positions_use_their_own_rows():
    # Tokens at distinct positions must rotate differently: swapping two positions changes
    # the output of those tokens only.
    np = pytest.importorskip("numpy")
    pytest.importorskip("onnxruntime")
    from kfuzz.kernels import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((3, 2, 8)).astype(np.float32)
    a = ort.rope(x, np.array([5, 60000, 7]), base=10000.0)
    b = ort.rope(x, np.array([5, 7, 60000]), base=10000.0)
    assert np.array_equal(a[0], b[0])
    assert not np.allclose(a[1], b[1]) and not np.allclose(a[2], b[2])


@pytest.mark.parametrize("kernel, dtype", [
    ("ort_attention", "float16"), ("jax_attention", "float16"), ("jax_attention", "bfloat16"),
    ("jax_attention_jit", "bfloat16"),
])
@pytest.mark.parametrize("q_len, k_len", [(5, 5), (3, 9), (9, 3)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_kernels_pass_ops_sdpa(kernel, dtype, q_len, k_len, causal):
    # Top-left causal alignment like ops.sdpa's oracle, also with q_len != k_len.
    pytest.importorskip("onnxruntime" if kernel.startswith("ort") else "jax")
    result = run_case("ops.sdpa", _sdpa(q_len, k_len, causal, dtype), kernel=kernel)
    assert result.status == Status.PASS, result.error


def test_jitted_jax_attention_raises_on_float16():
    # jax 0.10.2 on the CPU: jax.jit(jax.nn.dot_product_attention) refuses FP16 inputs that
    # the eager call takes (docs/findings.md); kfuzz reports the kernel's error as such.
    pytest.importorskip("jax")
    result = run_case("ops.sdpa", _sdpa(5, 5, False), kernel="jax_attention_jit")
    assert result.status == Status.ERROR
    assert "'F16_F16_F32' is not supported by dot_general on CPU" in result.error


@pytest.mark.parametrize("q_len, k_len, causal", [(5, 5, False), (9, 3, False), (5, 5, True)])
def test_ort_multihead_attention_packed_layout(q_len, k_len, causal):
    pytest.importorskip("onnxruntime")
    result = run_case("ops.sdpa", _sdpa(q_len, k_len, causal), kernel="ort_mha")
    assert result.status == Status.PASS, result.error


def test_ort_multihead_attention_unidirectional_last_row_sees_every_key():
    # onnxruntime 1.32.0: with fewer queries than keys, unidirectional masks the first rows
    # top-left and lets the last one attend every key (docs/findings.md).
    pytest.importorskip("onnxruntime")
    from kfuzz.execute.executor import materialise_case
    from kfuzz.oracles.sdpa import sdpa_fp64

    target = registry.get("ops.sdpa")
    kernel = registry.resolve(target, "kernel", "ort_mha")
    inputs, params = materialise_case(target, _sdpa(3, 7, True))
    got = kernel(**inputs, **params).double()
    top_left = sdpa_fp64(**inputs, **params)
    full = sdpa_fp64(**inputs, causal=False, scale=params["scale"])
    assert torch.allclose(got[:, :, :2], top_left[:, :, :2], atol=1e-2, rtol=1e-2)
    assert torch.allclose(got[:, :, 2], full[:, :, 2], atol=1e-2, rtol=1e-2)
    assert not torch.allclose(got[:, :, 2], top_left[:, :, 2], atol=1e-2, rtol=1e-2)


def test_ort_attention_declares_float16_only():
    target = registry.get("ops.sdpa")
    for name in ("ort_attention", "ort_mha"):
        assert registry.resolve(target, "kernel", name).dtypes == ("float16",)


@pytest.mark.parametrize("target, kernel, case", [
    ("ops.softmax", "jax_softmax_jit_pow2",
     {"shape": [3, 37], "dtype": "float32", "x": {"kind": "normal", "scale": 4.0}, "seed": 1}),
    ("ops.softmax", "jax_softmax_jit_pow2",
     {"shape": [5, 9], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 4.0}, "seed": 2}),
    ("ops.rmsnorm", "jax_rmsnorm_jit_pow2",
     {"shape": [3, 37], "dtype": "float32", "x": {"kind": "normal", "scale": 4.0},
      "eps": 1e-6, "seed": 1}),
])
def test_bucketed_jit_kernels_pass_on_shapes_between_powers_of_two(target, kernel, case):
    pytest.importorskip("jax")
    result = run_case(target, {**case, "materialise": 2}, kernel=kernel)
    assert result.status == Status.PASS, result.error


def test_bucketed_softmax_compiles_once_per_bucket():
    np = pytest.importorskip("numpy")
    jnp = pytest.importorskip("jax.numpy")
    from kfuzz.kernels import jax as kjax

    jitted = kjax._jitted("softmax")
    shapes = [(3, 5), (4, 7), (3, 6)]  # all in bucket (4, 8)
    before = jitted._cache_size()
    for shape in shapes:
        x = jnp.asarray(np.ones(shape, np.float32))
        out = kjax.softmax_jit(x, bucketed=True)
        assert out.shape == shape and np.allclose(np.asarray(out), 1.0 / shape[1])
    assert jitted._cache_size() - before <= 1
    before = jitted._cache_size()
    for shape in shapes:
        kjax.softmax_jit(jnp.asarray(np.ones(shape, np.float16)))
    assert jitted._cache_size() - before == len(shapes)

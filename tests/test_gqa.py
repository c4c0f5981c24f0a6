"""ops.gqa: the float64 grouped-query oracle, the torch kernels in a short campaign, the ONNX
Runtime GroupQueryAttention kernels (past and new keys, batch entries, the optional present
outputs), the case space and the command line."""

from __future__ import annotations

import pytest
import torch
from kfuzz.api import fuzz, run_case
from kfuzz.enums import Status
from kfuzz.oracles.sdpa import gqa_fp64, sdpa_fp64
from kfuzz.targets import registry


def _qkv(b, heads, kv_heads, q_len, k_len, d, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, heads, q_len, d, generator=g)
    k, v = (torch.randn(b, kv_heads, k_len, d, generator=g) for _ in range(2))
    return q.to(dtype), k.to(dtype), v.to(dtype)


def _case(shape, dtype="float32", causal=True, seed=3):
    """A case of shape [B, Hkv, G, Lq, P, D]."""
    return {"shape": list(shape), "dtype": dtype, "causal": causal,
            "q": {"kind": "normal", "scale": 1.0}, "kv": {"kind": "normal", "scale": 1.0},
            "seed": seed, "materialise": 2}


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("group, q_len, k_len", [(1, 5, 5), (4, 3, 7), (8, 1, 9), (3, 6, 6)])
def test_oracle_is_multihead_attention_on_each_groups_kv_head(causal, group, q_len, k_len):
    # Head h attends with kv head h // G; the Lq queries are the last of Lk positions, so the
    # result is the last Lq rows of top-left causal attention over all Lk positions.
    q, k, v = _qkv(2, 2 * group, 2, q_len, k_len, 16)
    full_q = torch.cat([torch.randn(2, 2 * group, k_len - q_len, 16, dtype=q.dtype), q], dim=2)
    keys, vals = (torch.stack([t[:, h // group] for h in range(2 * group)], dim=1)
                  for t in (k, v))
    expected = sdpa_fp64(full_q, keys, vals, causal=causal, scale=0.25)[:, :, k_len - q_len:]
    got = gqa_fp64(q, k, v, causal=causal, scale=0.25)
    assert got.dtype == torch.float64 and got.shape == q.shape
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_oracle_masks_bottom_right_not_top_left():
    # One query, three keys: causal sees every key (it is the last position), not key 0 only.
    q, k, v = _qkv(1, 1, 1, 1, 3, 8)
    assert torch.allclose(gqa_fp64(q, k, v, causal=True, scale=1.0),
                          gqa_fp64(q, k, v, causal=False, scale=1.0))
    assert not torch.allclose(gqa_fp64(q, k, v, causal=True, scale=1.0),
                              sdpa_fp64(q, k, v, causal=True, scale=1.0))


@pytest.mark.parametrize("heads, kv_heads, q_len, k_len, message", [
    (6, 4, 2, 2, "query heads 6 are not a multiple of key/value heads 4"),
    (4, 2, 5, 3, "5 queries but 3 keys"),
])
def test_oracle_refuses_what_the_contract_rules_out(heads, kv_heads, q_len, k_len, message):
    with pytest.raises(ValueError, match=message):
        gqa_fp64(*_qkv(1, heads, kv_heads, q_len, k_len, 8), causal=True, scale=1.0)


def test_cases_cover_groups_pasts_and_dtypes_and_build_consistent_inputs():
    from hypothesis import HealthCheck, given, settings
    from kfuzz.cases.materialise import stamp
    from kfuzz.execute.executor import materialise_case

    target = registry.get("ops.gqa")
    seen = []

    @settings(max_examples=60, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(target.cases(1 << 14))
    def draw(case):
        b, kv_heads, group, q_len, past, d = case["shape"]
        inputs = materialise_case(target, stamp(case))[0]
        assert list(inputs["q"].shape) == [b, kv_heads * group, q_len, d]
        assert list(inputs["k"].shape) == list(inputs["v"].shape) == [b, kv_heads,
                                                                      q_len + past, d]
        assert inputs["q"].numel() <= 1 << 14 and inputs["k"].numel() <= 1 << 14
        seen.append((group, past > 0, case["dtype"]))

    draw()
    assert {g for g, _, _ in seen} > {1}
    assert {p for _, p, _ in seen} == {False, True}
    assert {d for _, _, d in seen} == {"float32", "bfloat16", "float16"}


@pytest.mark.parametrize("kernel", ["sdpa_gqa", "repeat_kv"])
def test_torch_kernels_pass_a_short_campaign(kernel):
    result = fuzz("ops.gqa", kernel=kernel, max_examples=40, seed=0, max_numel=1 << 15)
    assert result.examples >= 40
    assert not result.findings, [f.case for f in result.findings]


ORT_SHAPES = [
    [1, 2, 4, 3, 2, 16],   # one batch entry, three new queries after a past of two
    [2, 2, 4, 3, 2, 16],   # several batch entries and queries with a past: one entry a call
    [2, 1, 8, 1, 7, 64],   # decoding: one query, G = 8
    [3, 2, 1, 5, 0, 8],    # a prompt (no past), G = 1
    [1, 4, 2, 4, 4, 32],
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", ORT_SHAPES)
def test_ort_gqa_matches_float64_in_fp32(shape, causal):
    pytest.importorskip("onnxruntime")
    from kfuzz.execute.executor import materialise_case

    case = _case(shape, causal=causal)
    result = run_case("ops.gqa", case, kernel="ort_gqa")
    assert result.status == Status.PASS, result.error
    # Much closer than the target's tolerance: FP32 attention, rounding only.
    target = registry.get("ops.gqa")
    inputs, params = materialise_case(target, case)
    got = registry.resolve(target, "kernel", "ort_gqa")(**inputs, **params)
    assert (got.double() - gqa_fp64(**inputs, **params)).abs().max() < 1e-5


@pytest.mark.parametrize("shape", [[2, 2, 4, 3, 2, 16], [1, 1, 8, 1, 7, 64]])
def test_ort_gqa_passes_in_fp16(shape):
    pytest.importorskip("onnxruntime")
    result = run_case("ops.gqa", _case(shape, dtype="float16"), kernel="ort_gqa")
    assert result.status == Status.PASS, result.error


def test_ort_gqa_without_present_outputs_is_wrong_with_a_past():
    # onnxruntime 1.32.0: the same node without its optional present_key / present_value
    # outputs returns garbage once a past is given (docs/findings.md); without a past it is
    # right.
    pytest.importorskip("onnxruntime")
    assert run_case("ops.gqa", _case([3, 2, 1, 5, 0, 8]),
                    kernel="ort_gqa_no_present").status == Status.PASS
    assert run_case("ops.gqa", _case([1, 1, 2, 1, 3, 8]),
                    kernel="ort_gqa_no_present").status == Status.FAIL


def test_ort_kernels_declare_the_dtypes_onnx_runtime_implements():
    target = registry.get("ops.gqa")
    for name in ("ort_gqa", "ort_gqa_no_present"):
        assert target.kernels[name].dtypes == ("float32", "float16")
        assert target.kernels[name].library == "onnxruntime"
    assert target.kernels["sdpa_gqa"].library is None or not target.kernels["sdpa_gqa"].library


def test_targets_lists_ops_gqa(kfuzz):
    res = kfuzz("targets", "ops.gqa")
    assert res.code == 0, res.err
    lines = {line.split()[1].rstrip(":"): line for line in res.out.splitlines()
             if line.startswith("  kernel ")}
    assert "(default)" in lines["sdpa_gqa"]
    assert lines["ort_gqa"].endswith("needs kfuzz[onnxruntime]")
    assert "ops.gqa" in kfuzz("targets", "--names").out.split()


def test_run_all_has_an_entry_for_each_gqa_library_kernel_and_it_runs(kfuzz, db_path):
    pytest.importorskip("onnxruntime")
    from kfuzz.run.plan import select_targets

    entries = select_targets([], all=True)
    assert {"ops.gqa", "ops.gqa@ort_gqa", "ops.gqa@ort_gqa_no_present"} <= set(entries)
    res = kfuzz("run", "ops.gqa@ort_gqa", "--max-examples", "10", "--seed", "0",
                "--max-numel", "4096", "--db", db_path, "--json")
    assert res.code == 0, res.out + res.err
    doc = res.json()
    assert [(t["entry"], t["state"]) for t in doc["targets"]] == [("ops.gqa@ort_gqa", "run")]
    assert [c["kernel"] for c in doc["campaigns"]] == ["ort_gqa"]


@pytest.mark.parametrize("kernel", ["jax_gqa", "jax_gqa_jit"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", ORT_SHAPES)
def test_jax_gqa_matches_float64_in_fp32(shape, causal, kernel):
    pytest.importorskip("jax")
    from kfuzz.execute.executor import materialise_case

    case = _case(shape, causal=causal)
    result = run_case("ops.gqa", case, kernel=kernel)
    assert result.status == Status.PASS, result.error
    # Much closer than the target's tolerance: FP32 attention, the bottom-right mask included.
    target = registry.get("ops.gqa")
    inputs, params = materialise_case(target, case)
    got = registry.resolve(target, "kernel", kernel)(**inputs, **params)
    assert (got.double() - gqa_fp64(**inputs, **params)).abs().max() < 1e-5


def test_jax_gqa_entries_run_under_all(kfuzz, db_path):
    pytest.importorskip("jax")
    from kfuzz.run.plan import select_targets

    assert {"ops.gqa@jax_gqa", "ops.gqa@jax_gqa_jit"} <= set(select_targets([], all=True))
    res = kfuzz("run", "ops.gqa@jax_gqa_jit", "--max-examples", "10", "--seed", "0",
                "--max-numel", "4096", "--pin", "dtype=float32", "--db", db_path, "--json")
    assert res.code == 0, res.out + res.err
    assert [c["kernel"] for c in res.json()["campaigns"]] == ["jax_gqa_jit"]

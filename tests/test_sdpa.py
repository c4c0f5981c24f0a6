"""ops.sdpa and ops.sdpa_fa: backends, references, FlashAttention's rule, and a finding stored
on a GPU replayed on a CPU."""

from __future__ import annotations

import math

import pytest
import torch
from kfuzz.execute.executor import Outcome
from kfuzz.execute.findings import Finding
from kfuzz.kernels.availability import Unavailable
from kfuzz.kernels.sdpa import sdpa
from kfuzz.oracles.sdpa import fa_rule_ratio, sdpa_fp64, sdpa_lowp
from kfuzz.store.corpus import CorpusStore
from kfuzz.targets import registry as targets
from kfuzz.targets.builtin.real import fa_checked

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _qkv(seed: int, shape=(2, 3, 7, 13, 32), dtype=torch.bfloat16):
    b, h, lq, lk, d = shape
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, h, n, d, generator=g).to(dtype) for n in (lq, lk, lk))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 7, 13, 32), (1, 2, 13, 7, 16), (1, 1, 1, 1, 8)])
def test_fp64_oracle_is_torch_sdpa_in_float64(causal, shape):
    # Includes Lq != Lk, where causal masking must be top-left aligned as torch's is_causal.
    q, k, v = (t.double() for t in _qkv(0, shape))
    scale = shape[-1] ** -0.5
    got = sdpa_fp64(q, k, v, causal=causal, scale=scale)
    expected = sdpa(q, k, v, causal=causal, scale=scale, backend="math")
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_lowp_reference_rounds_every_step_to_the_input_dtype():
    q, k, v = _qkv(1)
    low = sdpa_lowp(q, k, v, causal=False, scale=32**-0.5)
    exact = sdpa_fp64(q, k, v, causal=False, scale=32**-0.5)
    assert low.dtype == torch.bfloat16
    assert 0 < (low.double() - exact).abs().max().item() < 0.05


@pytest.mark.parametrize("backend", ["math", "flash"])
def test_cpu_backends_run_and_pass_the_default_tolerance(backend):
    q, k, v = _qkv(2)
    out = sdpa(q, k, v, causal=True, scale=32**-0.5, backend=backend)
    exact = sdpa_fp64(q, k, v, causal=True, scale=32**-0.5).to(out.dtype)
    assert out.dtype == q.dtype
    assert torch.allclose(out.double(), exact.double(), atol=1e-2, rtol=1e-2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("backend", ["efficient", "cudnn"])
def test_cuda_only_backends_are_unavailable_on_cpu(backend):
    with pytest.raises(Unavailable, match=f"SDPA backend '{backend}' runs only on CUDA, not on cpu"):
        sdpa(*_qkv(3), causal=False, scale=1.0, backend=backend)


# -- FlashAttention's rule -------------------------------------------------------------------

def test_fa_rule_allows_twice_the_baseline_error_plus_the_floor():
    ref = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
    baseline = torch.tensor([1.0, -0.5, 0.25 + 2**-6], dtype=torch.float64).to(torch.bfloat16)
    # floor = 2 * max|(r + 0.3 - 0.3) - r| in BF16 = 2 * 2**-8 (from r = -0.5)
    allowed = 2 * 2**-6 + 2 * 2**-8
    ok = torch.tensor([1.0, -0.5, 0.25 + 2**-5], dtype=torch.bfloat16)
    bad = torch.tensor([1.0 + 2**-4, -0.5, 0.25], dtype=torch.bfloat16)
    assert fa_rule_ratio(ok, ref, baseline).tolist() == [0.0, 0.0, 2**-5 / allowed]
    assert fa_rule_ratio(bad, ref, baseline)[0].item() == pytest.approx(2**-4 / allowed)
    assert fa_rule_ratio(bad, ref, baseline)[0].item() > 1


def test_fa_rule_with_an_overflowing_baseline_allows_any_finite_output():
    ref = torch.tensor([1.0, 2.0], dtype=torch.float64)
    baseline = torch.tensor([math.inf, 2.0], dtype=torch.float16)
    ratio = fa_rule_ratio(torch.tensor([3.0, math.nan], dtype=torch.float16), ref, baseline)
    assert ratio[0].item() == 0.0 and math.isnan(ratio[1].item())


def _sloppy_attention(q, k, v, *, causal, scale):
    # Rounds the softmax weights to FP8 (e4m3): far more error than a plain BF16 version.
    s = (q.float() @ k.float().transpose(-1, -2)) * scale
    if causal:
        s = s.masked_fill(~torch.ones(s.shape[-2:], dtype=torch.bool).tril(), float("-inf"))
    p = torch.softmax(s, dim=-1).to(torch.float8_e4m3fn).float()
    return (p @ v.float()).to(q.dtype)


def test_fa_checked_passes_the_flash_backend_and_fails_a_sloppy_kernel():
    q, k, v = _qkv(4, (2, 4, 64, 128, 64))
    flash = fa_checked(lambda *a, **kw: sdpa(*a, **kw, backend="flash"))(
        q, k, v, causal=False, scale=0.125)
    sloppy = fa_checked(_sloppy_attention)(q, k, v, causal=False, scale=0.125)
    assert flash.dtype == torch.float64 and flash.shape == q.shape
    assert flash.max().item() <= 1.0
    assert sloppy.max().item() > 1.5  # FlashAttention's test would fail it


def test_ops_sdpa_fa_campaign_passes_cpu_flash(kfuzz, db_path):
    run = kfuzz("run", "ops.sdpa_fa", "--kernel", "flash", "--max-examples", "30", "--seed", "1",
                "--db", db_path, "--json")
    assert run.code == 0, run.out
    assert run.json()["campaigns"][0]["examples"] == 30


# -- devices: a finding stored on a GPU, replayed on a CPU -----------------------------------

def _store_gpu_finding(db_path, kernel: str) -> str:
    case = {"shape": [1, 2, 5, 9, 16], "dtype": "bfloat16", "causal": True,
            "q": {"kind": "normal", "scale": 1.0}, "kv": {"kind": "normal", "scale": 1.0},
            "seed": 11}
    outcome = Outcome("fail", {"out": {"passed": False, "mismatch_ratio": 0.25, "mismatches": 1,
                                       "nonfinite_mismatches": 0}})
    finding = Finding("ops.sdpa", kernel, "fp64", case, outcome, kind="shrunk", device="cuda")
    with CorpusStore(db_path) as store:
        return store.record_finding(finding)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_finding_of_a_cuda_only_kernel_replays_as_a_clear_error(kfuzz, db_path):
    key = _store_gpu_finding(db_path, "efficient")
    res = kfuzz("replay", "--db", db_path, "--json")
    assert res.code == 3  # a finding that cannot be replayed here is not a pass
    [replay] = res.json()["replays"]
    assert (replay["fingerprint"], replay["verdict"]) == (key, "error")
    assert replay["error"] == ("ops.sdpa kernel 'efficient' cannot run on cpu: SDPA backend "
                               "'efficient' runs only on CUDA, not on cpu; on cpu use one of "
                               "math, flash")


def test_gpu_finding_of_a_kernel_that_runs_on_cpu_replays_there(kfuzz, db_path):
    _store_gpu_finding(db_path, "flash")
    res = kfuzz("replay", "--db", db_path, "--json")
    [replay] = res.json()["replays"]
    assert replay["verdict"] == "fixed", replay
    assert replay["mismatch_ratio"] == 0.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_run_with_a_cuda_only_kernel_on_cpu_is_one_line_exit_2(kfuzz, db_path):
    res = kfuzz("run", "ops.sdpa", "--kernel", "cudnn", "--max-examples", "3", "--db", db_path)
    assert res.code == 2
    assert res.err.startswith("kfuzz: error: ops.sdpa kernel 'cudnn' cannot run on cpu: ")
    assert res.err.count("\n") == 1


@needs_cuda
def test_kernel_vs_kernel_runs_both_kernels_on_the_device(kfuzz, db_path):
    res = kfuzz("run", "ops.sdpa", "--kernel", "flash", "--oracle", "efficient", "--device", "cuda",
                "--compare", "exact", "--max-examples", "20", "--seed", "1", "--db", db_path,
                "--json")
    assert res.code in (0, 1), res.err
    assert res.json()["campaigns"][0]["examples"] == 20


def test_every_backend_is_a_kernel_of_both_targets():
    for name in ("ops.sdpa", "ops.sdpa_fa"):
        assert {"math", "flash", "efficient", "cudnn"} <= set(targets.get(name).kernels)

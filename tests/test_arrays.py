"""Array adapters: kernels and oracles that take and return NumPy or JAX arrays
(`variant(fn, arrays=...)`), converted once at the call, the output contract checked after."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kfuzz.api import run_case
from kfuzz.enums import Status
from kfuzz.errors import ContractViolation, PluginError
from kfuzz.targets import registry
from kfuzz.targets.arrays import to_jax, to_numpy, to_torch
from kfuzz.targets.declare import variant

CASE = {"shape": [3, 40], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 4.0},
        "seed": 7, "materialise": 2}


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_numpy_round_trip_keeps_every_bit(dtype):
    x = (torch.randn(5, 7, dtype=torch.float64) * 1e3).to(dtype)
    x[0, 0] = float("nan")
    x[0, 1] = -0.0
    array = to_numpy(x)
    assert array.shape == (5, 7)
    assert array.dtype.name == str(dtype).removeprefix("torch.")
    back = to_torch(array)
    assert back.dtype == dtype
    assert torch.equal(_bits(back), _bits(x))


def test_numpy_input_shares_memory_and_bf16_is_ml_dtypes():
    import ml_dtypes

    x = torch.tensor([1.0, 2.5, -3.0], dtype=torch.bfloat16)
    array = to_numpy(x)
    assert array.dtype == ml_dtypes.bfloat16
    assert array.astype(np.float32).tolist() == [1.0, 2.5, -3.0]
    array[0] = 8.0  # the same memory: a kernel that writes into its input is seen
    assert x[0].item() == 8.0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_jax_round_trip_keeps_every_bit(dtype):
    pytest.importorskip("jax")
    x = (torch.randn(4, 9, dtype=torch.float64) * 30).to(dtype)
    back = to_torch(to_jax(x))
    assert back.dtype == dtype
    assert torch.equal(_bits(back), _bits(x))


def _np_softmax(x):
    """A NumPy softmax in float64, rounded once to x's dtype (BF16 through ml_dtypes)."""
    xd = x.astype(np.float64)
    e = np.exp(xd - xd.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)


def test_numpy_kernel_is_judged_like_a_torch_one():
    outcome = run_case("ops.softmax", CASE, kernel=variant(_np_softmax, arrays="numpy"))
    assert outcome.status == Status.PASS, outcome.error
    wrong = run_case("ops.softmax", CASE,
                     kernel=variant(lambda x: (_np_softmax(x).astype(np.float32) * 1.5)
                                    .astype(x.dtype), arrays="numpy"))
    assert wrong.status == Status.FAIL


def test_output_contract_is_checked_after_conversion():
    # A float64 result where the target expects BF16: the converted tensor's dtype is named.
    with pytest.raises(ContractViolation, match="torch.float64"):
        run_case("ops.softmax", CASE,
                 kernel=variant(lambda x: _np_softmax(x).astype(np.float64), arrays="numpy"))


def test_numpy_kernel_writing_into_its_input_is_a_contract_finding():
    def writes(x):
        out = _np_softmax(x)
        x[...] = 0
        return out

    outcome = run_case("ops.softmax", CASE, kernel=variant(writes, arrays="numpy"))
    assert outcome.status == Status.CONTRACT
    assert outcome.error_type == "writes-input"


def test_jax_kernel_runs_through_the_adapter():
    jax = pytest.importorskip("jax")
    kernel = variant(lambda x: jax.nn.softmax(x.astype("float32"), axis=-1).astype(x.dtype),
                     arrays="jax")
    outcome = run_case("ops.softmax", {**CASE, "dtype": "float16"}, kernel=kernel)
    assert outcome.status == Status.PASS, outcome.error


def test_module_level_variant_is_a_kernel_reference(tmp_path, monkeypatch):
    (tmp_path / "npkernels.py").write_text(
        "import numpy as np\nfrom kfuzz.targets.declare import variant\n"
        "def _soft(x):\n"
        "    xd = x.astype(np.float64)\n"
        "    e = np.exp(xd - xd.max(axis=-1, keepdims=True))\n"
        "    return (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)\n"
        "softmax = variant(_soft, arrays='numpy', dtypes=['float32'])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = registry.resolve(registry.get("ops.softmax"), "kernel", "npkernels:softmax")
    assert (found.name, found.arrays, found.dtypes) == ("npkernels:softmax", "numpy",
                                                       ("float32",))
    outcome = run_case("ops.softmax", CASE, kernel="npkernels:softmax")
    assert outcome.status == Status.PASS, outcome.error


@pytest.mark.parametrize("bad, message", [
    ({"arrays": "cupy"}, "choose from torch, numpy, jax"),
    ({"dtypes": ["float8"]}, "unknown dtype 'float8'"),
    ({"dtypes": []}, "unknown dtype None"),
])
def test_variant_refuses_unknown_arrays_and_dtypes(bad, message):
    with pytest.raises(PluginError, match=message):
        variant(_np_softmax, **bad)

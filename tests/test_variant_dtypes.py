"""Dtypes per kernel: a variant declaring the dtypes it implements (`variant(fn, dtypes=...)`)
gets no case of another dtype, through a pin that holds the field within them (`OneOf`), and
the run's summary says what was left out."""

from __future__ import annotations

import pytest
import torch
from kfuzz.cases.pins import OneOf, apply_pins, holds
from kfuzz.errors import OptionError
from kfuzz.run.plan import RunOptions, plan
from kfuzz.search.campaign import CampaignConfig
from kfuzz.targets.declare import variant

SEEN: list[str] = []


def _fp32_only(x: torch.Tensor) -> torch.Tensor:
    """A softmax that implements FP32 and FP16 only: it raises on anything else."""
    SEEN.append(str(x.dtype).removeprefix("torch."))
    if x.dtype not in (torch.float32, torch.float16):
        raise NotImplementedError(f"no {x.dtype} kernel")
    return torch.softmax(x.float(), dim=-1).to(x.dtype)


fp32_fp16 = variant(_fp32_only, dtypes=["float32", "float16"])
KERNEL = f"{__name__}:fp32_fp16"


def test_one_of_keeps_its_values_and_replaces_the_others_by_seed():
    pin = OneOf(("float32", "float16"), ("bfloat16",), "k implements float32, float16")
    assert apply_pins({"dtype": pin}, {"dtype": "float16", "seed": 3})["dtype"] == "float16"
    picked = {apply_pins({"dtype": pin}, {"dtype": "bfloat16", "seed": s})["dtype"]
              for s in range(4)}
    assert picked == {"float32", "float16"}  # both, none thrown away
    assert holds({"dtype": pin, "eps": 1e-5}, {"dtype": "float32", "eps": 1e-5})
    assert not holds({"dtype": pin}, {"dtype": "bfloat16"})
    assert pin.describe() == "bfloat16 (k implements float32, float16)"


def _configs(**campaign):
    configs, _ = plan(RunOptions(targets=["ops.softmax"],
                                 campaign=CampaignConfig(target="", **campaign)))
    return configs


def test_plan_holds_the_dtype_within_the_kernels_dtypes():
    (config,) = _configs(kernel=KERNEL)
    pin = config.pins["dtype"]
    assert isinstance(pin, OneOf)
    assert set(pin.values) == {"float32", "float16"}
    assert pin.left_out == ("bfloat16",)
    # A kernel without declared dtypes gets every dtype.
    (plain,) = _configs(kernel="eager_fp32")
    assert not plain.pins


def test_user_pin_outside_the_kernels_dtypes_is_one_line(kfuzz):
    result = kfuzz("run", "ops.softmax", "--kernel", KERNEL, "--pin", "dtype=bfloat16",
                   "--max-examples", "5")
    assert result.code == 2
    assert "implements float32, float16, not bfloat16" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_no_dtype_in_common_is_refused():
    only64 = variant(_fp32_only, dtypes=["float64"])
    globals()["only64"] = only64
    with pytest.raises(OptionError, match="nothing to fuzz"):
        _configs(kernel=f"{__name__}:only64")


def test_run_draws_only_implemented_dtypes_and_says_what_it_left_out(kfuzz, db_path):
    SEEN.clear()
    result = kfuzz("run", "ops.softmax", "--kernel", KERNEL, "--max-examples", "120",
                   "--seed", "3", "--db", db_path)
    assert result.code == 0, result.out + result.err
    assert set(SEEN) == {"float32", "float16"}  # no BF16 case reached the kernel
    assert "left out (not implemented by the kernel)" in result.out
    assert "ops.softmax: dtype bfloat16" in result.out
    document = kfuzz("run", "ops.softmax", "--kernel", KERNEL, "--max-examples", "20",
                     "--seed", "3", "--json").json()
    assert document["targets"][0]["left_out"] == {
        "dtype": f"bfloat16 ('{KERNEL}' implements float32, float16)"}

"""BF16 and FP16 normals looked up from the rounded table give the bits of the float64 build
rounded to the dtype, at every scale, on both sides of every chunk boundary."""

from __future__ import annotations

import math

import pytest
import torch
from kfuzz.cases.materialise.core import normal_table
from kfuzz.cases.materialise.fields import NORMAL_CHUNK, Field, HostField
from kfuzz.cases.materialise.rounded import STRADDLES, applies, rounded_table

SCALES = [1.0, 0.125, 3.0, 0.75, 2.0**-20, 1e-30, 1e30, 65504.0, 0.0, -1.5]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", SCALES)
def test_looked_up_normals_are_the_float64_build_rounded(dtype, scale):
    for key, shape in ((7, (40, 33)), (123456789, (2, NORMAL_CHUNK + 77))):
        for draw in (0, 1, 9):
            host = HostField(key, shape).normal(draw, scale, dtype)
            want = Field(key, shape).normal(draw)
            if scale != 1.0:
                want = want * scale
            want = want.to(dtype)
            assert host.dtype == dtype and host.shape == shape
            assert torch.equal(host.view(torch.int16), want.view(torch.int16)), (scale, key)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_table_marks_only_intervals_that_straddle_a_boundary(dtype):
    table = rounded_table(dtype, 1.0)
    marked = table == STRADDLES
    # The quantiles close to 0 are closer together than the dtype's values: they round to one
    # value each; marked intervals are a minority (about 4% for BF16, 22% for FP16).
    assert 0 < int(marked.sum()) < table.numel() // 3
    # An unmarked entry is the rounded value of every point of its interval: its low end...
    low, slope = normal_table()
    kept = ~marked
    assert torch.equal(table[kept], low.to(dtype).view(torch.int16)[kept])
    # ...and its midpoint.
    mid = (slope * 2.0**31 + low).to(dtype).view(torch.int16)
    assert torch.equal(table[kept], mid[kept])


def test_infinite_or_nan_scales_take_the_float64_path():
    assert applies(torch.bfloat16, 1.0) and not applies(torch.float32, 1.0)
    for scale in (math.inf, math.nan):
        assert not applies(torch.float16, scale)
        host = HostField(5, (3, 50)).normal(2, scale, torch.float16)
        want = (Field(5, (3, 50)).normal(2) * scale).to(torch.float16)
        assert torch.equal(host.view(torch.int16), want.view(torch.int16))

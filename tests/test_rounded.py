"""BF16 and FP16 normals looked up from the rounded table give the bits of the float64 build
rounded to the dtype, at every scale, on both sides of every chunk boundary."""

from __future__ import annotations

import math

import pytest
import torch
from kfuzz.cases.materialise import hostnormals
from kfuzz.cases.materialise.core import RANGE_BITS, normal_table
from kfuzz.cases.materialise.fields import Field, HostField
from kfuzz.cases.materialise.hostnormals import NORMAL_CHUNK
from kfuzz.cases.materialise.rounded import (
    STRADDLES,
    applies,
    ranged_table,
    rounded_table,
)

SCALES = [1.0, 0.125, 3.0, 0.75, 2.0**-20, 1e-30, 1e30, 65504.0, 0.0, -1.5]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("lookup_min", ["default", 1])
def test_looked_up_normals_are_the_float64_build_rounded(dtype, scale, lookup_min, monkeypatch):
    if lookup_min != "default":  # every size looked up, not only the sizes the default picks
        monkeypatch.setattr(hostnormals, "LOOKUP_MIN",
                            dict.fromkeys(hostnormals.LOOKUP_MIN, lookup_min))
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
def test_the_table_marks_only_ranges_that_straddle_a_boundary(dtype):
    table = rounded_table(dtype, 1.0)
    ranges = 1 << RANGE_BITS
    assert table.shape == (65536 * ranges,)
    marked = table == STRADDLES
    # The quantiles close to 0 are closer together than the dtype's values: they round to one
    # value each; marked ranges are a minority (about 1.2% for BF16, 7% for FP16).
    assert 0 < int(marked.sum()) < table.numel() // 8
    # An unmarked entry is the rounded value of every point of its range (entry i * ranges + j:
    # interval i, positions from j * 2**32 / ranges): its low end, its midpoint, its high end.
    low, slope = normal_table()
    kept = ~marked
    width = 2.0**32 / ranges
    for offset in (0.0, width / 2, width - 1):
        position = torch.arange(ranges, dtype=torch.float64) * width + offset
        value = (slope[:, None] * position + low[:, None]).to(dtype).view(torch.int16)
        assert torch.equal(table[kept], value.reshape(-1)[kept]), offset


def test_infinite_or_nan_scales_take_the_float64_path():
    assert applies(torch.bfloat16, 1.0) and not applies(torch.float32, 1.0)
    for scale in (math.inf, math.nan):
        assert not applies(torch.float16, scale)
        host = HostField(5, (3, 50)).normal(2, scale, torch.float16)
        want = (Field(5, (3, 50)).normal(2) * scale).to(torch.float16)
        assert torch.equal(host.view(torch.int16), want.view(torch.int16))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", SCALES + [math.inf])
def test_version_5_normals_looked_up_are_their_range_start_rounded(dtype, scale):
    # Every element looked up (past one chunk too), against torch's float64 arithmetic at the
    # first position of each element's range; an infinite scale takes the float64 path.
    for key, shape in ((7, (40, 33)), (123456789, (2, NORMAL_CHUNK + 77))):
        host = HostField(key, shape, version=5).normal(1, scale, dtype)
        want = Field(key, shape, version=5).normal(1, scale, dtype)
        assert host.dtype == dtype and host.shape == shape
        assert torch.equal(host.view(torch.int16), want.view(torch.int16)), (scale, key)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_version_5_table_is_the_rounded_table_where_a_range_rounds_to_one_value(dtype):
    rounded, table = rounded_table(dtype, 0.75), ranged_table(dtype, 0.75)
    kept = rounded != STRADDLES
    assert torch.equal(table[kept], rounded[kept]) and not bool((table == STRADDLES).any())

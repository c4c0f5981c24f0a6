"""Large version-2 inputs: the host generator works in chunks and rounds each chunk to the
input's dtype as it is drawn; the bits are those the unchunked float64 build gives."""

from __future__ import annotations

import hashlib

import pytest
import torch
from kfuzz.cases.materialise import values
from kfuzz.cases.materialise.counter import CounterGenerator
from kfuzz.cases.materialise.fields import Field, HostField
from kfuzz.cases.materialise.hostnormals import NORMAL_CHUNK

# sha256 prefixes of normal inputs, computed by the generator before it built in chunks rounded
# to the dtype: a stored case of these sizes must keep building them.
DIGESTS = [
    ((64, 3072), torch.bfloat16, 1.0, "227ea7cc58ed8f89"),
    ((24, 1024), torch.float16, 0.75, "453648b0c22ad6ef"),
    ((3, 70001), torch.float32, 2.5, "d873dfd8062ea860"),
    ((5, 40000), torch.float64, 1.0, "d526dd0863941462"),
    ((2, 9), torch.float16, 3.0, "594b552682375925"),
    ((1, 8), torch.bfloat16, 1.0, "4da13fa696115ade"),
]


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()[:16]


@pytest.mark.parametrize(("shape", "dtype", "scale", "digest"), DIGESTS)
def test_large_inputs_build_the_bits_they_always_built(shape, dtype, scale, digest):
    x = values(CounterGenerator(11), shape, dtype, {"kind": "normal", "scale": scale}, name="x")
    assert x.shape == shape and x.dtype == dtype
    assert _digest(x) == digest


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_chunks_rounded_as_drawn_match_one_float64_pass(dtype):
    shape = (3, NORMAL_CHUNK + 5)  # two chunks, the second a short one
    host = HostField(91, shape).normal(4, 0.3, dtype)
    whole = (Field(91, shape).normal(4) * 0.3).to(dtype)
    assert torch.equal(host.view(torch.uint8), whole.view(torch.uint8))
    assert torch.equal(HostField(91, shape).normal(4), Field(91, shape).normal(4))

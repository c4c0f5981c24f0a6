"""Versions 2 to 4 of materialisation: position-stable values, regimes, and stored cases that
still build bit for bit."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from kfuzz.cases.materialise import (
    VERSION_KEY,
    coords_version,
    counter,
    generator,
    generator_for,
    hostnormals,
    integers,
    sparse_indices,
    stamp,
    values,
)
from kfuzz.cases.materialise.counter import CounterGenerator
from kfuzz.cases.materialise.distributions import pow2
from kfuzz.cases.materialise.fields import Field, HostField, ScalarField
from kfuzz.errors import CaseError
from kfuzz.targets import registry as targets

NORMAL = {"kind": "normal", "scale": 1.0}
INDEX = {"n_rows": 50, "k": 16, "n_valid": 12, "window": 4, "ragged": True, "duplicates": False,
         "sorted": False, "out_of_range": True}
CASES = {
    "ops.rmsnorm": {"shape": [4, 64], "dtype": "bfloat16", "x": NORMAL, "eps": 1e-6, "seed": 1},
    "dsv4.sparse_attn": {"shape": [2, 3, 64], "index": INDEX, "q": NORMAL,
                         "kv": {"kind": "uniform", "low": -1.0, "high": 2.0}, "sink": NORMAL,
                         "seed": 7},
    "ops.rope": {"shape": [3, 2, 8], "dtype": "float16",
                 "x": {"kind": "log_uniform", "min_exp": -3, "max_exp": 3, "signed": True},
                 "max_position": 1024, "base": 10000.0, "seed": 3},
}
# sha256 prefixes of the inputs each case builds. Version 1: computed by the code as it was
# before version 2 existed, so stored cases replay bit for bit. Versions 2, 4 and 5: pinned so
# that a change to the generator cannot slip in unnoticed (it would re-interpret stored cases).
# Version 4 differs from version 2 only in FP32 normals (dsv4.sparse_attn's q and sink), version
# 5 from version 4 only in BF16 and FP16 normals (ops.rmsnorm's x, dsv4.sparse_attn's q).
DIGESTS = {
    "ops.rmsnorm": ("8e7873dbe01e07eb", "a6fdd8c2177fdde7", "a6fdd8c2177fdde7", "e243b96aa628e3bb"),
    "dsv4.sparse_attn": ("6ccb3dc7054698c3", "80742f03f5f0195f", "d0c6507d1c4147df",
                         "ba86d91c1850afde"),
    "ops.rope": ("8bc8c0eeafd2486d", "48ac9659b6575ee6", "48ac9659b6575ee6", "48ac9659b6575ee6"),
}


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_version_builds_the_bits_it_always_built(name):
    target, case = targets.get(name), CASES[name]
    v1, v2, v4, v5 = DIGESTS[name]
    assert _digest(target.inputs(case, generator_for(case))) == v1
    for version, digest in ((2, v2), (4, v4)):
        old = {**case, VERSION_KEY: version}
        assert _digest(target.inputs(old, generator_for(old))) == digest, version
    assert stamp(case)[VERSION_KEY] == 5
    assert _digest(target.inputs(stamp(case), generator_for(stamp(case)))) == v5


def test_every_regime_builds_the_bits_it_always_built():
    dist = {**NORMAL, "shift": -512.0, "row_gap": 64.0, "dominant": 1024.0, "ties": "bfloat16",
            "edge_rows": {"edge": "underflow", "fraction": 0.3},
            "nonfinite": {"nan": 0.01, "inf": 0.01}}
    x = values(CounterGenerator(21), [6, 40], torch.float32, dist, name="x")
    assert _digest({"": x}) == "ed6daba4605846cf"


def test_a_case_without_a_version_uses_the_sequential_generator():
    case = CASES["ops.rmsnorm"]
    assert not isinstance(generator_for(case), CounterGenerator)
    assert isinstance(generator_for(stamp(case)), CounterGenerator)
    assert stamp(case)[VERSION_KEY] == 5


def test_an_unknown_version_is_refused():
    with pytest.raises(CaseError, match="materialise=9 is unknown"):
        generator_for({**CASES["ops.rmsnorm"], VERSION_KEY: 9})


DISTS = [
    NORMAL,
    {"kind": "uniform", "low": 2.0, "high": 3.0},
    {"kind": "log_uniform", "min_exp": -3, "max_exp": 5, "signed": True},
    {"kind": "outliers", "scale": 1.0, "fraction": 0.1, "magnitude": 4096.0},
    {"kind": "constant_rows", "value": 5.0, "fraction": 0.5},
    {"kind": "edge", "edge": "subnormal", "spread": 0},
    {**NORMAL, "shift": -512.0, "row_gap": 64.0, "ties": "bfloat16",
     "edge_rows": {"edge": "underflow", "fraction": 0.3}, "nonfinite": {"nan": 0.01, "inf": 0.01}},
]


# (version, dtype): every rule each version has for normals.
RULES = [(2, torch.float32), (4, torch.float32), (5, torch.bfloat16), (5, torch.float16)]


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


@pytest.mark.parametrize("version, dtype", RULES, ids=lambda r: str(r).removeprefix("torch."))
@pytest.mark.parametrize("dist", DISTS, ids=lambda d: "+".join(sorted(d)))
def test_removing_rows_and_columns_keeps_every_surviving_element(dist, version, dtype):
    big = values(CounterGenerator(11, version=version), [6, 40], dtype, dist, name="x")
    small = values(CounterGenerator(11, version=version), [3, 17], dtype, dist, name="x")
    assert torch.equal(_bits(big[:3, :17]), _bits(small))
    other = values(CounterGenerator(12, version=version), [6, 40], dtype, dist, name="x")
    assert not torch.equal(_bits(big), _bits(other))


def test_the_dominant_element_stays_where_it_was_when_it_survives_the_cut():
    dist = {**NORMAL, "dominant": 1024.0}
    big = values(CounterGenerator(11), [8, 40], torch.float64, dist, name="x")
    small = values(CounterGenerator(11), [8, 20], torch.float64, dist, name="x")
    kept = big[:, :20].amax(dim=1) > 900  # rows whose dominant element is among the first 20
    assert kept.any() and not kept.all()
    assert torch.equal(big[kept, :20], small[kept])


def test_inputs_depend_on_their_name_not_on_the_other_inputs():
    a = values(CounterGenerator(3), [5, 5], torch.float32, NORMAL, name="q")
    gen = CounterGenerator(3)
    values(gen, [100], torch.float32, NORMAL, name="kv")
    b = values(gen, [5, 5], torch.float32, NORMAL, name="q")
    assert torch.equal(a, b)
    # Without names, inputs are keyed by call order: still independent of the sizes.
    g1, g2 = CounterGenerator(3), CounterGenerator(3)
    values(g1, [7], torch.float32, NORMAL)
    values(g2, [2], torch.float32, NORMAL)
    assert torch.equal(values(g1, [4, 4], torch.float32, NORMAL),
                       values(g2, [4, 4], torch.float32, NORMAL))


@pytest.mark.parametrize("spec", [INDEX, {**INDEX, "duplicates": True, "sorted": True}],
                         ids=["distinct", "duplicates"])
def test_a_tokens_indices_survive_removing_other_tokens(spec):
    four = sparse_indices(CounterGenerator(5), 4, spec)
    two = sparse_indices(CounterGenerator(5), 2, spec)
    assert torch.equal(four[:2], two)


def test_fewer_cache_rows_keep_the_surviving_scattered_rows_in_order():
    spec = {**INDEX, "ragged": False, "out_of_range": False, "window": 0, "n_valid": 6}
    many = sparse_indices(CounterGenerator(2), 3, {**spec, "n_rows": 50})
    few = sparse_indices(CounterGenerator(2), 3, {**spec, "n_rows": 30})
    for t in range(3):
        kept = [int(r) for r in many[t] if 0 <= r < 30]
        assert [int(r) for r in few[t][: len(kept)]] == kept


def test_distributions_and_regimes_land_where_they_say():
    g = CounterGenerator(0)
    n = values(g, [20000], torch.float64, {"kind": "normal", "scale": 2.0})
    assert abs(n.mean()) < 0.05 and 1.9 < n.std() < 2.1
    u = values(g, [4096], torch.float64, DISTS[1])
    assert 2.0 <= u.min() and u.max() < 3.0
    lu = values(g, [4096], torch.float64, DISTS[2]).abs()
    assert lu.min() >= 2.0**-3 and lu.max() < 2.0**6
    assert 250 < (values(g, [4096], torch.float32, DISTS[3]).abs() == 4096).sum() < 600
    sub = values(g, [4096], torch.float32, DISTS[5]).abs()
    assert (sub < torch.finfo(torch.float32).tiny).all() and (sub > 0).sum() > 4000
    shifted = values(g, [64, 32], torch.float64, {**NORMAL, "shift": -1024.0})
    assert shifted.max() < -1000
    dominant = values(g, [64, 32], torch.float64, {**NORMAL, "dominant": 4096.0})
    assert ((dominant > 4000).sum(dim=1) == 1).all()
    rows = values(g, [64, 32], torch.float32,
                  {**NORMAL, "edge_rows": {"edge": "subnormal", "fraction": 0.5}})
    tiny = (rows.abs() < torch.finfo(torch.float32).tiny).all(dim=1)
    assert 16 < tiny.sum() < 48


def test_ties_sit_on_or_next_to_a_bf16_rounding_tie():
    x = values(CounterGenerator(4), [4096], torch.float32, {**NORMAL, "ties": "bfloat16"})
    low = x.to(torch.bfloat16).float()
    # A float32 on a BF16 tie has its low 16 bits at 0x8000 (one unit either side: 0x7FFF/0x8001).
    bits = x.view(torch.int32) & 0xFFFF
    on_tie = (bits == 0x8000) | (bits == 0x7FFF) | (bits == 0x8001)
    assert 1500 < on_tie.sum() < 2600
    assert torch.isfinite(low).all()


def test_modifiers_need_a_version_2_case():
    with pytest.raises(CaseError, match="need a version-2 case"):
        values(generator(0), [4], torch.float32, {**NORMAL, "shift": 2.0})


def test_integers_and_exact_powers_of_two():
    pos = integers(CounterGenerator(1), [1000], 10, 20)
    assert pos.min() >= 10 and pos.max() < 20 and len(set(pos.tolist())) == 10
    e = torch.tensor([-1022, -1, 0, 52, 1023])
    assert pow2(e).tolist() == [2.0**-1022, 0.5, 1.0, 2.0**52, 2.0**1023]


def test_field_bits_do_not_depend_on_the_extent_of_other_axes():
    a = Field(99, (3, 1000)).bits(0)
    b = Field(99, (5, 10)).bits(0)
    assert torch.equal(a[:3, :10], b[:3, :10])
    assert 0 <= int(a.min()) and int(a.max()) < 2**32


# -- the host (NumPy) and torch implementations of the generator agree bit for bit ------------
# The torch implementation is what builds inputs on a GPU (`--device cuda`); on this CPU it runs
# on the CPU, which checks the same code.

@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (2, 3, 64), (1, 1), (0, 4), (1, 8)])
@pytest.mark.parametrize("host_kind", [HostField, ScalarField])
def test_host_and_torch_fields_give_the_same_bits(shape, host_kind):
    host, torch_field = host_kind(77, shape), Field(77, shape, "cpu")
    for draw in (0, 3):
        assert torch.equal(host.bits(draw), torch_field.bits(draw))
        assert torch.equal(host.below(draw, 7), torch_field.below(draw, 7))
        for method in ("uniform", "signs", "normal"):
            a, b = getattr(host, method)(draw), getattr(torch_field, method)(draw)
            assert a.shape == b.shape and a.dtype == b.dtype, method
            assert torch.equal(a.view(torch.int64), b.view(torch.int64)), method


@pytest.mark.parametrize("shape", [(1, 8), (5, 13), (24, 1024), (2, 40000)])  # to 3 chunks
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_scaled_normals_round_alike_in_every_field(shape, dtype):
    # Scaled and rounded as they are drawn: the torch field's (normal * scale).to(dtype).
    ints = {8: torch.int64, 4: torch.int32, 2: torch.int16}[dtype.itemsize]
    host_kind = ScalarField if math.prod(shape) <= 16 else HostField
    for key, scale in ((5, 1.0), (6, 0.125), (7, 3.0), (8, 0.1), (9, 2.0**8)):
        host, torch_field = host_kind(key, shape), Field(key, shape, "cpu")
        a, b = host.normal(1, scale, dtype), torch_field.normal(1, scale, dtype)
        assert a.shape == b.shape == shape and a.dtype == b.dtype == dtype
        assert torch.equal(a.view(ints), b.view(ints)), (key, scale)
        expected = (torch_field.normal(1) * scale).to(dtype)
        assert torch.equal(a.view(ints), expected.view(ints)), (key, scale)


def test_small_tensors_are_built_element_by_element():
    assert isinstance(counter.make_field(5, (2, 8)), ScalarField)
    assert isinstance(counter.make_field(5, (2, 9)), HostField)


@pytest.mark.parametrize("version, dtype", RULES, ids=lambda r: str(r).removeprefix("torch."))
@pytest.mark.parametrize("dist", DISTS, ids=lambda d: "+".join(sorted(d)))
def test_inputs_built_by_the_device_code_match_the_host_code(dist, version, dtype, monkeypatch):
    host = values(CounterGenerator(9, version=version), [5, 33], dtype, dist, name="x")
    monkeypatch.setattr(counter, "make_field", lambda key, shape, device, coords=None,
                        version=2: Field(key, shape, device, coords, version))
    device_code = values(CounterGenerator(9, version=version), [5, 33], dtype, dist, name="x")
    assert torch.equal(_bits(host), _bits(device_code))
    index_host = sparse_indices(CounterGenerator(9), 3, INDEX)
    assert torch.equal(index_host, sparse_indices(CounterGenerator(9), 3, INDEX))


@pytest.mark.parametrize("shape", [(2, 3), (3, 7)])  # element by element, and on the host
def test_a_field_at_coordinates_holds_those_elements_of_the_field_without(shape):
    full = Field(77, (6, 40)).bits(0)
    cols = [4, 9, 30, 31, 35, 36, 39][:shape[1]]
    want = full[1:1 + shape[0]][:, cols]
    for field in (Field(77, shape, coords=[1, cols]), counter.make_field(77, shape, coords=[1, cols])):
        assert torch.equal(field.bits(0), want)
    # A list longer than the axis: its first coordinates.
    assert torch.equal(Field(77, (1, 2), coords=[0, [5, 6, 7]]).bits(3), Field(77, (1, 8)).bits(3)[:, 5:7])


def test_a_version_3_case_builds_its_inputs_at_its_coordinates():
    full = {**CASES["ops.rmsnorm"], VERSION_KEY: 2}
    part = {**full, "shape": [2, 30], VERSION_KEY: 3, "coords": {"x": {"0": [[1, 3], 10]}}}
    target = targets.get("ops.rmsnorm")
    x = target.inputs(full, generator_for(full))["x"]
    assert torch.equal(target.inputs(part, generator_for(part))["x"], x[[1, 3]][:, 10:40])


def test_cache_rows_no_index_names_can_go_and_every_token_keeps_its_rows():
    target = targets.get("dsv4.sparse_attn")
    spec = {**INDEX, "ragged": False, "out_of_range": False}
    full = {**CASES["dsv4.sparse_attn"], "index": spec, VERSION_KEY: 2}
    inputs = target.inputs(full, generator_for(full))
    named = set(inputs["indices"][inputs["indices"] >= 0].tolist())
    unused = [r for r in range(spec["n_rows"] - spec["window"]) if r not in named][:3]
    rows = [r for r in range(spec["n_rows"]) if r not in unused]
    part = {**full, "index": {**spec, "n_rows": len(rows)}, VERSION_KEY: 3,
            "coords": {"kv": {"0": [rows, 0]}, "indices": {"3": [0, rows]}}}
    cut = target.inputs(part, generator_for(part))
    assert len(unused) == 3 and torch.equal(cut["q"], inputs["q"])

    def gathered(t):
        return t["kv"][t["indices"].clamp(min=0).long()] * (t["indices"] >= 0)[..., None]

    assert torch.equal(gathered(cut), gathered(inputs))


@pytest.mark.parametrize("coords, version, culprit", [
    ({"x": {"0": [1, 0]}}, 2, "needs materialise=3, 4 or 5"),
    ({"x": {"0": [-1, 0]}}, 3, "an integer >= 0"),
    ({"x": [1, 0]}, 3, "not a mapping of fields"),
    ({"x": {"0": [0]}}, 3, "1 axes of coordinates for a 2-axis field"),
    ({"x": {"0": [[0, 1], 0]}}, 3, "axis 0 has 4 elements and 2 coordinates"),
])
def test_bad_coordinates_name_the_culprit(coords, version, culprit):
    case = {**CASES["ops.rmsnorm"], VERSION_KEY: version, "coords": coords}
    with pytest.raises(CaseError, match=culprit):
        targets.get("ops.rmsnorm").inputs(case, generator_for(case))


# -- version 4: FP32 normals in float32 arithmetic ------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 8), (3, 5), (24, 1024), (2, 70000)])  # to 3 chunks
def test_version_4_fp32_normals_are_the_same_bits_in_every_field(shape):
    # float32 arithmetic on torch tensors, NumPy arrays and (rounded) Python floats, including
    # scales that make subnormals and overflow to infinity.
    host_kind = ScalarField if math.prod(shape) <= 16 else HostField
    for key, scale in ((5, 1.0), (6, 0.1), (7, 3.0), (8, 2.0**-140), (9, 1e38), (10, 1e39)):
        host, torch_field = host_kind(key, shape, version=4), Field(key, shape, "cpu", version=4)
        a, b = host.normal(1, scale, torch.float32), torch_field.normal(1, scale, torch.float32)
        assert a.shape == b.shape == shape and a.dtype == b.dtype == torch.float32
        assert torch.equal(a.view(torch.int32), b.view(torch.int32)), (key, scale)
    if shape[1] >= 16:  # the first row's first 16 elements, element by element
        row = HostField(5, shape, version=4).normal(1, 0.1, torch.float32)[0, :16]
        assert torch.equal(ScalarField(5, (1, 16), version=4).normal(1, 0.1, torch.float32)[0], row)


def test_version_4_changes_fp32_normals_only_and_only_in_their_last_bits():
    v2 = HostField(3, (64, 512)).normal(0, 1.0, torch.float32)
    v4 = HostField(3, (64, 512), version=4).normal(0, 1.0, torch.float32)
    assert not torch.equal(v2, v4)
    # Same interval and top 16 bits of position: within a few float32 units of version 2.
    assert float((v2 - v4).abs().max()) < 1e-5
    assert 0.98 < float(v4.std()) < 1.02 and float(v4.abs().max()) < 4.34
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        a = HostField(3, (64, 512)).normal(0, 2.0, dtype)
        b = HostField(3, (64, 512), version=4).normal(0, 2.0, dtype)
        assert torch.equal(a, b), dtype


def test_a_case_of_version_4_or_later_takes_coordinates_and_keeps_its_version():
    full = stamp(CASES["dsv4.sparse_attn"])
    part = {**full, "shape": [1, 3, 64], "coords": {"q": {"0": [[1], 0, 0]}}}
    target = targets.get("dsv4.sparse_attn")
    q = target.inputs(full, generator_for(full))["q"]
    assert torch.equal(target.inputs(part, generator_for(part))["q"], q[1:2])
    assert coords_version(full) == 5
    assert coords_version({**full, VERSION_KEY: 4}) == 4
    assert coords_version({**full, VERSION_KEY: 2}) == 3
    assert coords_version({**full, VERSION_KEY: 3}) == 3


# -- version 5: BF16 and FP16 normals take their range's value ------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(1, 8), (3, 5), (8, 300), (24, 1024), (2, 70000)])
def test_version_5_lowp_normals_are_the_same_bits_in_every_field(shape, dtype, monkeypatch):
    # Python floats, NumPy's float64 path, the looked-up table (from 4K elements on, in chunks
    # past 32K) and torch, at scales that make subnormals and overflow to infinity.
    host_kind = ScalarField if math.prod(shape) <= 16 else HostField
    for key, scale in ((5, 1.0), (6, 0.1), (7, 3.0), (8, 2.0**-130), (9, 2.0**-20), (10, 1e5),
                       (11, 1e39)):
        host, torch_field = host_kind(key, shape, version=5), Field(key, shape, "cpu", version=5)
        a, b = host.normal(1, scale, dtype), torch_field.normal(1, scale, dtype)
        assert a.shape == b.shape == shape and a.dtype == b.dtype == dtype
        assert torch.equal(_bits(a), _bits(b)), (key, scale)
    if host_kind is HostField:  # the other path of the host code gives the same bits
        monkeypatch.setattr(hostnormals, "RANGED_LOOKUP_MIN",
                            0 if math.prod(shape) < hostnormals.RANGED_LOOKUP_MIN else 1 << 30)
        for key, scale in ((5, 1.0), (6, 0.1), (8, 2.0**-130), (10, 1e5)):
            a = HostField(key, shape, version=5).normal(1, scale, dtype)
            b = Field(key, shape, "cpu", version=5).normal(1, scale, dtype)
            assert torch.equal(_bits(a), _bits(b)), (key, scale)


MANTISSA_BITS = {torch.bfloat16: 7, torch.float16: 10}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_version_5_changes_lowp_normals_only_and_by_at_most_one_step(dtype):
    v4 = HostField(3, (64, 512), version=4).normal(0, 1.0, dtype).float()
    v5 = HostField(3, (64, 512), version=5).normal(0, 1.0, dtype).float()
    differ = v4 != v5
    assert 0 < int(differ.sum()) < 0.1 * v4.numel()
    # Where they differ, version 4's value is within its range of positions, which starts at
    # version 5's: at most a quarter of the quantile table's interval there (1 / 65537 of the
    # probability, 1 / (65537 * pdf) of the value) plus one step of the dtype.
    larger = torch.maximum(v4.abs(), v5.abs())[differ].double()
    step = torch.ldexp(torch.ones_like(larger),
                       torch.frexp(larger).exponent - MANTISSA_BITS[dtype] - 1)
    pdf = torch.exp(-larger**2 / 2) / math.sqrt(2 * math.pi)
    apart = (v4 - v5).abs()[differ].double()
    assert bool((apart <= step + 1 / (4 * 65537 * pdf)).all())
    assert int((apart <= step).sum()) > 0.8 * int(differ.sum())  # mostly neighbours
    assert 0.98 < float(v5.std()) < 1.02 and float(v5.abs().max()) < 4.34
    for other in (torch.float64, torch.float32):
        a = HostField(3, (64, 512), version=4).normal(0, 2.0, other)
        b = HostField(3, (64, 512), version=5).normal(0, 2.0, other)
        assert torch.equal(a, b), other

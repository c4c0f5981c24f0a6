"""Non-finite inputs: the modes of a description's "nonfinite" entry, as drawn and as built."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kfuzz.cases import strategies as fst
from kfuzz.cases.materialise import counter, values
from kfuzz.cases.materialise.counter import CounterGenerator
from kfuzz.cases.materialise.fields import Field
from kfuzz.errors import CaseError

NORMAL = {"kind": "normal", "scale": 1.0}


def _build(shape, entry, seed=0, dtype=torch.float32):
    none = {"nan": 0.0, "inf": 0.0}
    return values(CounterGenerator(seed), list(shape), dtype,
                  {**NORMAL, "nonfinite": {**none, **entry}}, name="x")


def _mode(entry: dict) -> str:
    """The mode of a drawn "nonfinite" entry and the special values it holds, as one word."""
    for key, mode in (("rows", "rows"), ("ends", "ends")):
        if entry.get(key):
            return mode
    one = "+".join(k for k in ("nan", "inf") if entry.get(f"row_{k}"))
    scattered = "+".join(k for k in ("nan", "inf") if entry[k])
    return f"one:{one}" if one else f"scattered:{scattered}"


def _modes(specials, examples=2000) -> Counter:
    seen: Counter = Counter()

    @settings(max_examples=examples, database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(fst.distributions(specials=specials, regimes=()))
    def collect(dist):
        if "nonfinite" in dist:
            seen[_mode(dist["nonfinite"])] += 1

    collect()
    return seen


def test_one_a_row_puts_a_single_nan_in_each_row_it_picks():
    x = _build((64, 32), {"row_nan": 1.0})
    assert (x.isnan().sum(dim=1) == 1).all() and not x.isinf().any()
    half = _build((200, 32), {"row_nan": 0.5})
    hit = half.isnan().sum(dim=1)
    assert set(hit.tolist()) == {0, 1} and 70 < int(hit.sum()) < 130


def test_one_a_row_infinities_take_both_signs_and_sit_apart_from_the_nans():
    x = _build((200, 64), {"row_inf": 1.0})
    assert (x.isinf().sum(dim=1) == 1).all() and not x.isnan().any()
    assert (x == float("inf")).any() and (x == float("-inf")).any()
    both = _build((200, 64), {"row_nan": 1.0, "row_inf": 1.0})
    assert (both.isnan().sum(dim=1) == 1).all()
    # One +-Inf beside the NaN in every row but those where both picked the same element.
    assert 190 <= int(both.isinf().sum()) < 200


def test_the_element_picked_in_a_row_stays_where_it_was_when_it_survives_the_cut():
    entry = {"row_nan": 1.0, "row_inf": 0.5}
    big, small = _build((16, 40), entry), _build((16, 20), entry)
    kept = torch.isfinite(big[:, 20:]).all(dim=1)  # rows whose picks are among the first 20
    assert kept.any() and not kept.all()
    assert torch.equal(big[kept, :20].view(torch.int32), small[kept].view(torch.int32))


@pytest.mark.parametrize(("ends", "rows"), [("first", [0]), ("last", [9]), ("both", [0, 9])])
def test_ends_make_the_first_or_last_rows_of_the_leading_axis_nan(ends, rows):
    for shape in ((10, 8), (10, 3, 8)):
        x = _build(shape, {"ends": ends})
        nan = x.isnan().reshape(10, -1)
        assert [i for i in range(10) if nan[i].all()] == rows
        assert not nan[[i for i in range(10) if i not in rows]].any()
    # The last row is the last of the tensor built, whatever size the axis is cut to.
    assert _build((4, 8), {"ends": "last"})[3].isnan().all()
    assert _build((1, 8), {"ends": "first"}).isnan().all()


def test_an_unknown_end_names_the_choices():
    with pytest.raises(CaseError, match="unknown nonfinite ends 'middle'; choose from first"):
        _build((4, 4), {"ends": "middle"})


def test_the_new_keys_build_the_bits_they_always_built():
    # Stored cases replay bit for bit: pinned digests of each new key's values.
    digests = {}
    for name, entry in (("row_nan", {"row_nan": 0.5}), ("row_inf", {"row_inf": 0.5}),
                        ("ends", {"ends": "both"})):
        x = _build((6, 40), entry, seed=21)
        digests[name] = hashlib.sha256(x.view(torch.uint8).numpy().tobytes()).hexdigest()[:16]
    assert digests == PINNED


PINNED = {"row_nan": "744d941fdebe0a90", "row_inf": "5f7986ea783e4578", "ends": "dc947e9d70cd55f1"}


@pytest.mark.parametrize("entry", [{"row_nan": 0.5, "row_inf": 0.5}, {"ends": "both"}],
                         ids=["one", "ends"])
@pytest.mark.parametrize("shape", [(2, 8), (5, 33)])  # element by element, and on the host
def test_the_device_code_builds_what_the_host_code_builds(entry, shape, monkeypatch):
    host = _build(shape, entry, seed=9)
    monkeypatch.setattr(counter, "make_field", lambda key, shape, device, coords=None,
                        version=2: Field(key, shape, device, coords, version))
    assert torch.equal(host.view(torch.int32), _build(shape, entry, seed=9).view(torch.int32))


def test_every_mode_and_special_value_is_drawn_apart():
    seen = _modes(("nan", "inf"))
    # NaN alone, Inf alone and both, scattered and one a row; NaN rows; the ends.
    want = {"scattered:nan", "scattered:inf", "scattered:nan+inf", "one:nan", "one:inf",
            "one:nan+inf", "rows", "ends"}
    assert set(seen) == want, seen
    total = sum(seen.values())
    # One description in eight, as before (2,000 draws, derandomized).
    assert 150 < total < 400
    # No mode starved: each of the four modes holds at least a tenth of the draws.
    modes = Counter(word.split(":")[0] for word in seen.elements())
    assert min(modes.values()) > total / 10, modes


@pytest.mark.parametrize(("specials", "want"), [
    (("inf",), {"scattered:inf", "one:inf"}),
    (("nan",), {"scattered:nan", "one:nan", "rows", "ends"}),
])
def test_only_the_special_values_a_contract_allows_are_drawn(specials, want):
    assert set(_modes(specials, examples=600)) == want


@pytest.mark.parametrize(("entry", "names"), [
    ({"nan": 0.0, "inf": 0.0, "row_nan": 0.5}, {"nonfinite", "nan"}),
    ({"nan": 0.0, "inf": 0.0, "row_inf": 0.5}, {"nonfinite", "inf"}),
    ({"nan": 0.0, "inf": 0.0, "row_nan": 1.0, "row_inf": 1.0}, {"nonfinite", "nan", "inf"}),
    ({"nan": 0.0, "inf": 0.0, "ends": "last"}, {"nonfinite", "nan"}),
    ({"nan": 0.0, "inf": 0.0, "rows": 0.1}, {"nonfinite", "nan"}),
    ({"nan": 0.0, "inf": 0.05}, {"nonfinite", "inf"}),
])
def test_exclusions_see_what_each_mode_injects(entry, names):
    assert fst.regimes_in({"x": {**NORMAL, "nonfinite": entry}}) == names


@settings(max_examples=300, database=None, deadline=None, derandomize=True)
@given(fst.distributions(kinds=("normal",), specials=("nan", "inf"), regimes=()),
       st.integers(0, 2**32 - 1))
def test_a_value_is_built_only_where_exclusions_see_it(dist, seed):
    # `--exclude nan` (or inf) leaves out every description that can build one, in every mode.
    x = values(CounterGenerator(seed), [8, 64], torch.float32, dist, name="x")
    names = fst.regimes_in({"x": dist})
    assert not x.isnan().any() or "nan" in names
    assert not x.isinf().any() or "inf" in names

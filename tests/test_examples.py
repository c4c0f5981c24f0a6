"""Seed cases (a target's `examples`): run first in every campaign, stored and shrunk like any
drawn case when they fail."""

from __future__ import annotations

import kfuzz
import pytest
import torch
from kfuzz.errors import PluginError


@pytest.fixture(autouse=True)
def _registry_restored(monkeypatch):
    """Targets declared by a test live only as long as the test."""
    from kfuzz.targets import declare, registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry.all_targets()))
    monkeypatch.setattr(declare, "_DECLARED", set(declare._DECLARED))


def scale_fp64(x, *, alpha):
    return (x.double() * alpha).to(x.dtype)


def _declare(**extra):
    return kfuzz.target(
        "test.scale",
        inputs={"x": kfuzz.tensor("rows cols", dtypes=["float32", "bfloat16"])},
        params={"alpha": [0.5, 2.0]},
        oracle=scale_fp64,
        dims={"rows": (1, 64), "cols": (1, 4096)},
        **extra,
    )


def test_an_example_runs_first_and_its_failure_is_found_and_shrunk():
    target = _declare(examples=[{"rows": 3, "cols": 3001, "dtype": "bfloat16"}])
    assert target.examples[0] == {"rows": 3, "cols": 3001, "dtype": "bfloat16", "alpha": 0.5,
                                  "x": {"kind": "normal", "scale": 1.0}, "seed": 0}
    calls = []

    def kernel(x, *, alpha):  # wrong only where a row is 3001 long: no draw is likely to hit it
        calls.append((tuple(x.shape), x.dtype))
        out = scale_fp64(x, alpha=alpha)
        return out + 1 if x.shape[-1] == 3001 else out

    result = kfuzz.fuzz(target, kernel=kernel, max_examples=30, seed=4, shrink_seconds=5)
    assert calls[0] == ((3, 3001), torch.bfloat16)
    assert result.failed
    shrunk = next(f for f in result.findings if f.kind == "shrunk")
    assert shrunk.case["cols"] == 3001 and shrunk.case["rows"] == 1, shrunk.case


def test_without_examples_the_same_fault_goes_unfound():
    # The control of the test above: the fault is out of the drawn cases' reach.
    target = _declare()

    def kernel(x, *, alpha):
        out = scale_fp64(x, alpha=alpha)
        return out + 1 if x.shape[-1] == 3001 else out

    assert not kfuzz.fuzz(target, kernel=kernel, max_examples=30, seed=4).failed


def test_pins_apply_to_examples_and_excluded_regimes_leave_them_out():
    target = _declare(examples=[{"rows": 2, "cols": 5, "x": {"kind": "uniform", "low": 0.0,
                                                              "high": 1.0}},
                                {"rows": 2, "cols": 6}])
    shapes = []

    def kernel(x, *, alpha):
        shapes.append(tuple(x.shape))
        return scale_fp64(x, alpha=alpha)

    kfuzz.fuzz(target, kernel=kernel, max_examples=5, seed=1, pins={"rows": 7},
               exclude=["uniform"])
    assert shapes[0] == (7, 6)


@pytest.mark.parametrize("examples, message", [
    ({"rows": 1}, "examples must be a list of case dicts"),
    ([3], "examples[0] is a int, not a case dict"),
    ([{"rows": 1}], "gives no size for 'cols'"),
    ([{"rows": 1, "cols": 2, "colour": 1}], "names 'colour', which is not a shape symbol"),
    ([{"rows": 1, "cols": float("nan")}], "examples[0] is not plain JSON data"),
])
def test_bad_examples_are_one_line_errors(examples, message):
    with pytest.raises(PluginError, match=None) as info:
        _declare(examples=examples)
    assert message in str(info.value) and "\n" not in str(info.value)

"""A campaign's draws depend on its seed alone, not on which local modules are loaded (which
differs between a driver and its workers): Hypothesis' local constants are hidden while a
campaign runs, and come back after."""

from __future__ import annotations

import pytest

providers = pytest.importorskip("hypothesis.internal.conjecture.providers")


def test_local_constants_are_hidden_while_entered_and_back_after():
    from kfuzz.search.constants import seed_only_draws

    before = providers._get_local_constants()
    assert len(before) > 0  # kfuzz and the tests are local files, full of literals
    cache = providers.CONSTANTS_CACHE
    with seed_only_draws():
        assert len(providers._get_local_constants()) == 0
        assert providers.CONSTANTS_CACHE is not cache
        with seed_only_draws():  # re-entrant
            assert len(providers._get_local_constants()) == 0
        assert len(providers._get_local_constants()) == 0
    assert providers._get_local_constants() is before
    assert providers.CONSTANTS_CACHE is cache


def test_a_campaign_draws_the_same_cases_whatever_modules_are_loaded(tmp_path, monkeypatch):
    import sys

    import kfuzz

    def drawn():
        seen = []

        def kernel(x, weight, *, eps):
            seen.append((tuple(x.shape), str(x.dtype)))
            return kfuzz.targets.get("ops.rmsnorm").oracles["fp64"](
                x=x, weight=weight, eps=eps).to(x.dtype)

        kfuzz.fuzz("ops.rmsnorm", kernel=kernel, max_examples=60, seed=11)
        return seen

    first = drawn()
    # A newly loaded local module full of distinctive literals.
    module = tmp_path / "lots_of_literals.py"
    module.write_text("VALUES = [" + ", ".join(str(7919 * i + 13) for i in range(400)) + "]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("lots_of_literals")
    try:
        assert drawn() == first
    finally:
        sys.modules.pop("lots_of_literals", None)

"""Warnings raised while a campaign runs are counted by kind, not printed; Python's filters
still apply."""

from __future__ import annotations

import warnings

import pytest
from kfuzz.search.campaign import CampaignConfig, run_campaign
from kfuzz.search.warned import KINDS_KEPT, Warned


def test_warnings_are_counted_by_kind_and_not_printed(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with Warned() as warned:
            for _ in range(3):
                warnings.warn("all-NaN slice", RuntimeWarning, stacklevel=1)
            warnings.warn("other", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == ""
    kinds = warned.kinds()
    assert [(k["category"], k["message"], k["count"]) for k in kinds] == [
        ("RuntimeWarning", "all-NaN slice", 3), ("UserWarning", "other", 1)]
    assert kinds[0]["where"].rsplit(":", 1)[0].endswith("test_warned.py")


def test_the_block_puts_back_how_warnings_are_shown():
    before = warnings.showwarning
    with Warned():
        assert warnings.showwarning is not before
    assert warnings.showwarning is before


def test_many_kinds_keep_the_most_frequent_and_count_the_rest():
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with Warned() as warned:
            for i in range(KINDS_KEPT + 3):
                for _ in range(i + 1):
                    warnings.warn(f"kind {i}", RuntimeWarning, stacklevel=1)
    kinds = warned.kinds()
    assert len(kinds) == KINDS_KEPT + 1
    assert kinds[0]["message"] == f"kind {KINDS_KEPT + 2}"
    assert kinds[-1] == {"category": "...", "others": 3, "count": 1 + 2 + 3}


def test_filters_still_apply():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Warned() as warned, pytest.raises(RuntimeWarning):
            warnings.warn("now an error", RuntimeWarning, stacklevel=1)
        warnings.simplefilter("ignore")
        with Warned() as warned:
            warnings.warn("ignored", RuntimeWarning, stacklevel=1)
    assert warned.kinds() == []


def test_a_campaign_reports_its_kernels_warnings(kfuzz, db_path):
    result = run_campaign(CampaignConfig(
        target="ops.softmax", kernel="tests.helpers_kernels:softmax_that_warns", oracle="fp64",
        max_examples=20, seed=0))
    assert result.examples == 20 and not result.findings
    assert [(k["category"], k["message"]) for k in result.warnings] == [
        ("RuntimeWarning", "a row to look at")]
    assert result.to_dict()["warnings"] == result.warnings
    res = kfuzz("run", "ops.softmax", "--kernel", "tests.helpers_kernels:softmax_that_warns",
                "--max-examples", "20", "--seed", "0", "--db", db_path)
    assert res.code == 0, res.err
    assert "a row to look at" not in res.err
    assert ("warnings raised while running (counted, not printed):\n  ops.softmax: "
            in res.out)
    assert "x RuntimeWarning: a row to look at (" in res.out
    assert "tests/helpers_kernels.py:" in res.out


def test_kfuzz_fuzz_returns_the_warnings():
    import kfuzz

    from tests.helpers_kernels import softmax_that_warns

    result = kfuzz.fuzz("ops.softmax", kernel=softmax_that_warns, max_examples=10, seed=0)
    assert not result.findings
    assert [(k["category"], k["message"]) for k in result.warnings] == [
        ("RuntimeWarning", "a row to look at")]

"""Failure signatures: the error class of a mismatch, one corpus row per bug across seeds and
nights, distinct bugs on one output kept apart, no stale raw rows after concurrent runs."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from kfuzz.execute.executor import Outcome
from kfuzz.execute.findings import Finding, signature
from kfuzz.judge.error_class import error_class
from kfuzz.store.corpus import CorpusStore

from bench.faults.kernels import SOFTMAX_TILE

ROOT = Path(__file__).resolve().parents[1]
KFUZZ = [sys.executable, "-m", "kfuzz.cli"]
COMMITTED = ROOT / "tests" / "data" / "corpus.db"
EXACT = {"mode": "exact", "atol": 0.0, "rtol": 0.0, "ulp": None, "max_ratio": 0.0,
         "round_expected": True}
ALLCLOSE = {"mode": "allclose", "atol": 1e-5, "rtol": 1e-3, "ulp": None, "max_ratio": 0.0,
            "round_expected": True}


def _metrics(max_ulp=None, *, comparator=EXACT, points=(), passed=False, nonfinite=0,
             mismatches=1, numel=2):
    return {"mismatches": mismatches, "numel": numel, "mismatch_ratio": mismatches / numel,
            "passed": passed, "nonfinite_mismatches": nonfinite, "comparator": comparator,
            "max_ulp": max_ulp, "worst_points": list(points)}


def _point(expected, diff):
    return {"index": [0, 0], "actual": expected + diff, "expected": expected, "diff": diff,
            "allowed": 0.0}


# -- the error class -------------------------------------------------------------------------

@pytest.mark.parametrize("max_ulp, dtype, expected", [
    (1.0, "bfloat16", "rounding"),
    (4.0, "bfloat16", "rounding"),  # the bound is inclusive
    (4.5, "float16", "precision"),
    (8.0, "bfloat16", "precision"),  # 8 * 2**-7 = 1/16
    (9.0, "bfloat16", "wrong"),
    (64.0, "float16", "precision"),  # 64 * 2**-10 = 1/16
    (65.0, "float16", "wrong"),
    (500_000.0, "float32", "precision"),  # under 2**19
    ("inf", "bfloat16", "wrong"),  # the stored form of an infinite distance
    (math.inf, "float16", "wrong"),
])
def test_error_class_from_the_ulp_distance_in_the_output_dtype(max_ulp, dtype, expected):
    assert error_class(_metrics(max_ulp), dtype) == expected
    ulp_mode = {**EXACT, "mode": "ulp", "ulp": 1.0}
    assert error_class(_metrics(max_ulp, comparator=ulp_mode), dtype) == expected


def test_error_class_is_none_where_it_cannot_be_told():
    assert error_class(_metrics(1.0, passed=True), "bfloat16") is None
    assert error_class(_metrics(1.0, nonfinite=1), "bfloat16") is None  # bucketed apart
    assert error_class(_metrics(1.0), None) is None  # no dtype recorded
    assert error_class(_metrics(1.0), "not_a_dtype") is None
    assert error_class(_metrics(None), "bfloat16") is None  # no ULP data
    assert error_class(_metrics(float("nan")), "bfloat16") is None
    assert error_class(_metrics(3.0), "int64") == "wrong"  # integers have no rounding


def test_allclose_classes_by_the_bad_elements_not_by_a_tiny_passing_one():
    # max_ulp is over every element: one within atol of a tiny reference is millions of ULPs
    # off. The worst points are the bad elements: 3 FP16 ULPs at 1.0 (and 2 at 0.5).
    points = [_point(1.0, 3 * 2.0**-10), _point(0.5, 2 * 2.0**-11)]
    m = _metrics(1e7, comparator=ALLCLOSE, points=points)
    assert error_class(m, "float16") == "rounding"
    m = _metrics(1e7, comparator=ALLCLOSE, points=[_point(0.75, 0.01)])  # 20 ULPs, 1.3%
    assert error_class(m, "float16") == "precision"
    m = _metrics(1e7, comparator=ALLCLOSE, points=[_point(0.03, 0.03)])  # the whole value
    assert error_class(m, "float16") == "wrong"
    m = _metrics(1e7, comparator=ALLCLOSE, points=[_point(0.0, 2.0**-24)])  # one subnormal step
    assert error_class(m, "float16") == "rounding"
    # No worst points recorded: max_ulp it is.
    assert error_class(_metrics(2.0, comparator=ALLCLOSE), "float16") == "rounding"


def test_buckets_and_signature_carry_the_error_class():
    outcome = Outcome("fail", {"y": _metrics(9.0), "z": _metrics(1.0, passed=True)},
                      dtypes={"y": "bfloat16", "z": "bfloat16"})
    assert outcome.buckets() == {"y:mismatch:wrong"}
    assert signature(outcome) == "y:mismatch:wrong"
    two = Outcome("fail", {"y": _metrics(9.0), "z": _metrics(1.0)},
                  dtypes={"y": "bfloat16", "z": "float16"})
    assert signature(two) == "y:mismatch:wrong,z:mismatch:rounding"
    # Through the worker pipe and back, with metrics as `compare` makes them: 1.0 against
    # 1.0625 is 8 BF16 ULPs (1/16).
    import torch
    from kfuzz.judge.comparator import Comparator
    from kfuzz.judge.compare import compare

    live = compare(torch.tensor([1.0, 1.0625], dtype=torch.bfloat16), torch.tensor([1.0, 1.0]),
                   Comparator(mode="exact"))
    piped = Outcome("fail", {"y": live}, dtypes={"y": "bfloat16"})
    back = Outcome.from_dict(json.loads(json.dumps(piped.to_dict())))
    assert back.dtypes == piped.dtypes and back.buckets() == {"y:mismatch:precision"}
    # Without the output's dtype (an older record) the bucket is the old one, and the
    # signature none: too coarse to merge findings by.
    old = Outcome("fail", {"y": _metrics(9.0)})
    assert old.buckets() == {"y:mismatch"} and signature(old) is None
    nonfinite = Outcome("fail", {"y": _metrics(None, nonfinite=1)}, dtypes={"y": "float16"})
    assert signature(nonfinite) == "y:nonfinite"
    assert signature(Outcome("crash", signal="SIGSEGV")) == "crash:SIGSEGV"
    assert signature(Outcome("error", error_type="ValueError")) == "error:ValueError"


def test_the_two_fault_softmax_masks_the_tail_and_rounds_fp16_through_bf16():
    import torch
    from kfuzz.kernels.ops import softmax_fp32

    from bench.faults.kernels import softmax_tail_mask_bf16_store as kernel

    gen = torch.Generator().manual_seed(0)
    for n in (1, SOFTMAX_TILE, 2 * SOFTMAX_TILE, SOFTMAX_TILE + 1, 3 * SOFTMAX_TILE - 1):
        x = torch.randn(4, n, generator=gen).to(torch.bfloat16)
        got, want = kernel(x), softmax_fp32(x)
        if n > SOFTMAX_TILE and n % SOFTMAX_TILE:  # the last element is taken for padding
            assert (got[:, -1] == 0).all() and not torch.equal(got[:, :-1], want[:, :-1])
        else:  # BF16 outputs are stored right
            assert torch.equal(got, want)
    x = torch.randn(64, 16, generator=gen).to(torch.float16)
    ulps = (kernel(x).double() - softmax_fp32(x).double()).abs() / torch.finfo(torch.float16).eps
    assert 0 < (ulps / softmax_fp32(x).double().abs()).max() <= 2 * 4  # a few FP16 ULPs
    x = torch.randn(2, SOFTMAX_TILE + 1, generator=gen).to(torch.float16)
    x[0, -1] = float("inf")  # in the lane taken for padding: the row is NaN all the same
    assert kernel(x)[0].isnan().all() and softmax_fp32(x)[0].isnan().all()


# -- the corpus: one row per signature, one open peak, no stale raw ---------------------------

def _finding(kind="shrunk", *, cols=4, seed=0, ulp=9.0, ratio=0.5, replaces=None):
    case = {"shape": [1, cols], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 1.0},
            "seed": seed}
    outcome = Outcome("fail", {"y": _metrics(ulp, mismatches=int(ratio * cols), numel=cols)},
                      dtypes={"y": "bfloat16"})
    return Finding("ops.softmax", "eager_lowp", "fp64", case, outcome, kind, {"mode": "exact"},
                   replaces=replaces)


def _rows(store):
    return {r["fingerprint"]: r for r in store.findings()}


def test_a_shrunk_finding_with_the_signature_of_an_open_one_updates_it(db_path):
    with CorpusStore(db_path) as store:
        first = _finding(cols=8, seed=1)
        key = store.record_finding(first)
        assert first.stored_as == key == first.fingerprint
        bigger = _finding(cols=16, seed=2)
        assert store.record_finding(bigger) == key and bigger.stored_as == key
        row = store.get(key)
        assert row["times_seen"] == 2 and row["case"] == first.case  # not smaller: kept
        smaller = _finding(cols=2, seed=3, ratio=1.0)
        smaller.shrink = {"size_after": 2}
        assert store.record_finding(smaller) == key
        row = store.get(key)
        # The id stays the first case's fingerprint; the smaller case and its record replace.
        assert row["times_seen"] == 3 and row["case"] == smaller.case and row["size"] == 2
        assert row["shrink"] == {"size_after": 2} and row["mismatch_ratio"] == 1.0
        assert row["signature"] == "y:mismatch:wrong"
        # Another error class is another bug: a row of its own.
        other = _finding(cols=8, seed=4, ulp=1.0)
        assert store.record_finding(other) == other.fingerprint != key
        assert store.count() == 2
        # The first case again: a sighting of the row it started, which keeps its case.
        assert store.record_finding(_finding(cols=8, seed=1)) == key
        row = store.get(key)
        assert row["times_seen"] == 4 and row["case"] == smaller.case and row["size"] == 2
        assert row["mismatch_ratio"] == 1.0
        # A fixed finding is not reopened by a new case with its signature: a new row.
        store.db.execute("update findings set status = 'fixed' where fingerprint = ?", [key])
        again = _finding(cols=4, seed=9)
        assert store.record_finding(again) == again.fingerprint
        assert store.count() == 3


def test_peaks_update_the_one_open_peak_and_a_worse_case_replaces_it(db_path):
    with CorpusStore(db_path) as store:
        first = _finding("peak", cols=8, seed=1, ratio=0.5)
        key = store.record_finding(first)
        assert store.record_finding(_finding("peak", cols=8, seed=2, ratio=0.25)) == key
        assert store.get(key)["case"] == first.case  # not worse: kept
        worse = _finding("peak", cols=8, seed=3, ratio=1.0)
        assert store.record_finding(worse) == key
        row = store.get(key)
        assert (row["times_seen"], row["case"], row["mismatch_ratio"]) == (3, worse.case, 1.0)
        assert [r["kind"] for r in store.findings()] == ["peak"]


def test_a_shrunk_finding_deletes_its_raw_row_however_often_it_was_stored(db_path):
    with CorpusStore(db_path) as store:
        held = store.record_finding(_finding(cols=2, seed=5))  # an earlier night's finding
        raw = _finding("raw", cols=64, seed=7)
        store.record_finding(raw)
        store.record_finding(raw)  # a second run with the same seed stores it too
        assert store.get(raw.fingerprint)["times_seen"] == 2
        shrunk = _finding(cols=4, seed=8, replaces=raw.fingerprint)
        assert store.record_finding(shrunk) == held
        assert store.record_finding(shrunk) == held  # the second run's shrunk case
        rows = _rows(store)
        assert list(rows) == [held] and rows[held]["times_seen"] == 3
        # A raw case that shrank to itself is one sighting of the row it goes to.
        raw = _finding("raw", cols=3, seed=11)
        store.record_finding(raw)
        itself = _finding(cols=3, seed=11, replaces=raw.fingerprint)
        assert store.record_finding(itself) == held
        rows = _rows(store)
        assert list(rows) == [held] and rows[held]["times_seen"] == 4


def test_rows_without_a_signature_are_matched_by_fingerprint_only(db_path):
    with CorpusStore(db_path) as store:
        old = _finding(cols=8, seed=1)
        store.record_finding(old)
        store.db.execute("update findings set signature = null")  # as an older kfuzz stored it
        new = _finding(cols=2, seed=2)
        assert store.record_finding(new) == new.fingerprint  # a row of its own
        assert store.record_finding(old) == old.fingerprint  # the same case: its own row
        assert store.get(old.fingerprint)["times_seen"] == 2


def test_merge_carries_the_signature_and_a_replaced_case_with_its_metrics(tmp_path):
    from kfuzz.store.merge import merge_corpora

    a, b = tmp_path / "a.db", tmp_path / "b.db"
    first, smaller = _finding(cols=8, seed=1), _finding(cols=2, seed=3, ratio=1.0)
    with CorpusStore(a) as store:
        key = store.record_finding(first)
        store.record_finding(smaller)
        store.db.execute("update findings set first_seen = '2030-01-01T12:00:00+00:00', "
                         "last_seen = '2030-01-02T00:00:00+00:00'")
    with CorpusStore(b) as store:
        store.record_finding(first)
        store.db.execute("update findings set signature = null, "
                         "last_seen = '2030-01-01T00:00:00+00:00'")
        merge_corpora(store, [a])
        row = store.get(key)
    assert row["case"] == smaller.case and row["size"] == 2 and row["mismatch_ratio"] == 1.0
    assert row["signature"] == "y:mismatch:wrong" and row["times_seen"] == 3


# -- end to end: the CLI in subprocesses, one corpus ------------------------------------------

def _kfuzz(*argv, **popen):
    return subprocess.Popen([*KFUZZ, *map(str, argv)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def _run(*argv):
    proc = _kfuzz(*argv)
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def _findings(db):
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("select * from findings")]
    finally:
        conn.close()


# Seeds 1-8 each find all three error classes of this kernel in 100 cases (README).
SOFTMAX_LOWP = ["run", "ops.softmax", "--kernel", "eager_lowp", "--compare", "exact",
                "--max-examples", "100", "--shrink-seconds", "1"]


@pytest.mark.slow
def test_four_nights_of_one_buggy_kernel_leave_one_finding_per_signature(tmp_path):
    db = tmp_path / "nightly.db"
    stored = 0  # shrunk findings the nights reported
    for seed in (1, 2, 3, 4):
        code, out, err = _run(*SOFTMAX_LOWP, "--seed", seed, "--db", db)
        assert code == 1, err
        stored += sum(line.split()[1:2] == ["shrunk"] for line in out.splitlines())
    rows = _findings(db)
    shrunk = [r for r in rows if r["kind"] == "shrunk" and r["status"] == "open"]
    signatures = [r["signature"] for r in shrunk]
    assert len(signatures) == len(set(signatures)), signatures  # one row per signature
    # The all-BF16 softmax is off by a rounding, by lost bits and by a lot, every night.
    assert {r["signature"] for r in shrunk} == {
        f"y:mismatch:{how}" for how in ("rounding", "precision", "wrong")}
    # Each night's finding of a signature updates its row: a signature every night finds is
    # seen at least 4 times (more when two failures of one night shrank to the same kind of
    # error), and no row more often than the nights reported shrunk findings.
    seen = {r["signature"]: r["times_seen"] for r in shrunk}
    assert max(seen.values()) >= 4 and all(1 <= n <= stored for n in seen.values()), (seen, stored)
    peaks = [r for r in rows if r["kind"] == "peak" and r["status"] == "open"]
    assert len(peaks) <= 1
    assert not [r for r in rows if r["kind"] == "raw"]


@pytest.mark.slow
def test_two_root_causes_on_one_output_are_two_findings(tmp_path):
    db = tmp_path / "two.db"
    code, out, err = _run("run", "faults.softmax", "--kernel", "tail_mask_bf16_store",
                          "--plugin", "bench.faults.targets", "--seed", 1, "--shrink-seconds", 5,
                          "--db", db, "--json")
    assert code == 1, err
    shrunk = [f for f in json.loads(out)["findings"] if f["kind"] == "shrunk"]
    # The tail mask zeroes an element (wrong); the BF16 store is off by a few FP16 ULPs
    # (rounding) and, on FP32 outputs, by BF16's 8 bits (precision).
    signatures = sorted(f["signature"] for f in shrunk)
    assert "y:mismatch:wrong" in signatures, shrunk
    store = [f for f in shrunk if f["signature"] != "y:mismatch:wrong"]
    assert store and len(signatures) == len(set(signatures)), signatures
    for f in store:  # BF16 outputs are stored right
        assert (f["signature"], f["case"]["dtype"]) in (
            ("y:mismatch:rounding", "float16"), ("y:mismatch:precision", "float32")), f
    wrong = next(f for f in shrunk if "wrong" in f["signature"])
    cols = wrong["case"]["shape"][1]
    assert cols > SOFTMAX_TILE and cols % SOFTMAX_TILE  # where the tail mask drops one
    stored = {r["fingerprint"]: r["signature"] for r in _findings(db)}
    assert {stored[f["stored_as"]] for f in shrunk} == {f["signature"] for f in shrunk}


@pytest.mark.slow
def test_two_concurrent_runs_with_one_seed_leave_no_raw_row(tmp_path):
    db = tmp_path / "shared.db"
    CorpusStore(db).close()
    argv = [*SOFTMAX_LOWP[:-4], "--max-examples", "100", "--shrink-seconds", "1", "--seed", 3,
            "--db", db]
    procs = [_kfuzz(*argv) for _ in range(2)]
    results = [(p.wait(timeout=600), p.communicate()[1]) for p in procs]
    assert [code for code, _ in results] == [1, 1], results
    rows = _findings(db)
    assert [r for r in rows if r["kind"] == "shrunk"]
    assert not [r for r in rows if r["kind"] == "raw"], [(r["kind"], r["times_seen"])
                                                         for r in rows]


def test_an_old_corpus_still_opens_lists_and_replays(tmp_path):
    db = tmp_path / "corpus.db"
    shutil.copyfile(COMMITTED, db)
    code, out, err = _run("corpus", "list", "--db", db, "--json")  # read-only: not migrated
    assert code == 0, err
    listed = json.loads(out)["findings"]
    assert len(listed) == 2 and {f["signature"] for f in listed} == {None}
    code, out, err = _run("corpus", "show", listed[0]["fingerprint"][:12], "--db", db)
    assert code == 0 and "fingerprint" in out, err
    code, out, err = _run("replay", "--db", db, "--json")  # opened for writing: migrated
    assert code == 1, err  # one still fails, one is fixed, as when they were stored
    verdicts = sorted(r["verdict"] for r in json.loads(out)["replays"])
    assert verdicts == ["fixed", "still failing"]
    rows = _findings(db)
    assert len(rows) == 2 and all(r["signature"] is None for r in rows)
    code, out, err = _run("corpus", "list", "--db", db)
    assert code == 0 and out.count("\n") == 3, err

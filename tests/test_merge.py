"""`kfuzz corpus merge`: findings, sightings, replays and runs merged idempotently."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from kfuzz.errors import CorpusError
from kfuzz.execute.executor import Outcome
from kfuzz.execute.findings import Finding
from kfuzz.store.corpus import CorpusStore
from kfuzz.store.merge import merge_corpora

CASE = {"shape": [1, 4], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 1.0},
        "eps": 1e-6, "seed": 3}


def _finding(seed: int, kind: str = "shrunk", ratio: float = 0.5) -> Finding:
    metrics = {"mismatch_ratio": ratio, "mismatches": 2, "numel": 4, "passed": False,
               "nonfinite_mismatches": 0}
    return Finding("ops.rmsnorm", "eager_lowp", "fp64", {**CASE, "seed": seed},
                   Outcome("fail", {"y": metrics}), kind, {"mode": "exact"})


def _corpus(path: Path, *, started: str, sightings: dict[int, int], kind: str = "shrunk",
            ratio: float = 0.5) -> dict[int, str]:
    """A corpus with one run that saw the finding of each seed `n` times; returns seed ->
    fingerprint."""
    store = CorpusStore(path)
    run = store.start_run(argv=["run", str(path.name)], profile="dev", seed=1,
                          targets=["ops.rmsnorm"])
    store.db.execute("update runs set started = ? where id = ?", [started, run])
    keys = {}
    for seed, times in sightings.items():
        for _ in range(times):
            keys[seed] = store.record_finding(_finding(seed, kind, ratio), run_id=run)
    store.finish_run(run, status="done", examples=10, findings=len(keys), results=[])
    store.close()
    return keys


def _set(path: Path, key: str, **values: object) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"update findings set {', '.join(f'{k} = ?' for k in values)} "
                 "where fingerprint = ?", [*values.values(), key])
    conn.commit()
    conn.close()


def _replay(path: Path, key: str, at: str, status: str, ratio: float | None) -> None:
    conn = sqlite3.connect(path)
    conn.execute("insert into replays (fingerprint, at, status, kernel, oracle, mismatch_ratio) "
                  "values (?, ?, ?, 'eager_lowp', 'fp64', ?)", [key, at, status, ratio])
    conn.execute("update findings set last_replay = ?, last_replay_status = ?, status = ? "
                 "where fingerprint = ?",
                 [at, status, {"pass": "fixed", "fail": "open"}[status], key])
    conn.commit()
    conn.close()


def _dump(path: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(path)
    out = {
        "findings": conn.execute("select * from findings order by fingerprint").fetchall(),
        "replays": conn.execute("select fingerprint, at, status, kernel, oracle, mismatch_ratio "
                                "from replays order by 1, 2, 3").fetchall(),
        "runs": conn.execute("select started, argv, status from runs order by 1").fetchall(),
        "ledger": conn.execute("select * from merge_sightings order by 1, 2").fetchall(),
    }
    conn.close()
    return out


def _times_seen(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    out = dict(conn.execute("select fingerprint, times_seen from findings"))
    conn.close()
    return out


def _merge(into: Path, *sources: Path) -> list:
    store = CorpusStore(into)
    try:
        return merge_corpora(store, list(sources))
    finally:
        store.close()


@pytest.fixture
def two(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    ka = _corpus(a, started="2026-01-01T00:00:00+00:00", sightings={1: 2, 2: 1})
    kb = _corpus(b, started="2026-01-02T00:00:00+00:00", sightings={1: 3, 3: 1})
    return a, b, ka, kb


def test_merging_again_changes_nothing(two, tmp_path):
    a, b, ka, kb = two
    into = tmp_path / "c.db"
    first = _merge(into, a, b)
    assert [(s.findings_added, s.findings_updated, s.runs_added) for s in first] == \
        [(2, 0, 1), (1, 1, 1)]
    once = _dump(into)
    again = _merge(into, a, b, a)
    assert [(s.findings_added, s.findings_updated, s.replays_added, s.runs_added)
            for s in again] == [(0, 0, 0, 0)] * 3
    assert _dump(into) == once
    assert _times_seen(into) == {ka[1]: 5, ka[2]: 1, kb[3]: 1}
    with CorpusStore(into) as store:
        assert store.integrity_check() == "ok"


def test_substitute_replays_merge_without_touching_the_finding(two, tmp_path):
    a, b, ka, kb = two
    with CorpusStore(a) as store:
        store.record_replay(ka[1], status="pass", kernel="eager_fp32", oracle="fp64",
                            outcome=None, error=None)
    into = tmp_path / "c.db"
    _merge(into, a)
    with CorpusStore(into) as store:
        row = store.raw(ka[1])
        assert (row["status"], row["last_replay"]) == ("open", None)
        assert [(r["kernel"], r["substitute"]) for r in store.replays(ka[1])] == [("eager_fp32", 1)]
        assert store.integrity_check() == "ok"


def test_sightings_are_counted_once_through_cross_merges(two, tmp_path):
    a, b, ka, kb = two
    x = ka[1]
    _merge(b, a)  # b now holds a's two sightings of x beside its own three
    assert _times_seen(b)[x] == 5
    c = tmp_path / "c.db"
    _merge(c, b)
    _merge(c, a)  # a's sightings came through b already
    assert _times_seen(c)[x] == 5
    _merge(a, c)  # c carries a's own count back to a: not added again
    assert _times_seen(a)[x] == 5
    # b sees x once more; merging b again adds exactly that sighting everywhere.
    store = CorpusStore(b)
    store.record_finding(_finding(1))
    store.close()
    _merge(c, b)
    _merge(a, c)
    assert _times_seen(c)[x] == _times_seen(a)[x] == 6


def test_merge_order_does_not_matter(two, tmp_path):
    a, b, _, _ = two
    ab, ba = tmp_path / "ab.db", tmp_path / "ba.db"
    _merge(ab, a, b)
    _merge(ba, b, a)
    def findings(path):
        conn = sqlite3.connect(path)
        # first_run/last_run are run ids, numbered in the order the runs were copied.
        columns = [r[1] for r in conn.execute("pragma table_info(findings)")
                   if r[1] not in ("first_run", "last_run")]
        rows = conn.execute(f"select {', '.join(map(repr, columns))} from findings "
                            "order by fingerprint").fetchall()
        conn.close()
        return rows

    assert findings(ab) == findings(ba)
    assert _dump(ab)["replays"] == _dump(ba)["replays"]
    assert _dump(ab)["runs"] == _dump(ba)["runs"]


def test_first_seen_last_seen_and_status_of_the_latest_event(two, tmp_path):
    a, b, ka, _ = two
    x = ka[1]
    _set(a, x, first_seen="2026-01-01T00:00:00+00:00", last_seen="2026-01-02T00:00:00+00:00",
         kind="peak", mismatch_ratio=0.25)
    _set(b, x, first_seen="2026-01-03T00:00:00+00:00", last_seen="2026-01-04T00:00:00+00:00",
         kind="shrunk", mismatch_ratio=0.75)
    _replay(a, x, "2026-01-01T12:00:00+00:00", "fail", 0.25)
    _replay(b, x, "2026-01-05T00:00:00+00:00", "pass", 0.0)
    for order in ((a, b), (b, a)):
        into = tmp_path / f"{order[0].stem}{order[1].stem}.db"
        _merge(into, *order)
        store = CorpusStore(into)
        row = store.get(x)
        runs = {r["id"]: r["started"] for r in store.db.query("select id, started from runs")}
        assert row["first_seen"] == "2026-01-01T00:00:00+00:00"
        assert runs[row["first_run"]] == "2026-01-01T00:00:00+00:00"  # a's run, renumbered
        assert row["last_seen"] == "2026-01-04T00:00:00+00:00"
        assert runs[row["last_run"]] == "2026-01-02T00:00:00+00:00"
        assert row["mismatch_ratio"] == 0.75  # from the latest sighting
        assert row["kind"] == "shrunk"
        assert row["status"] == "fixed"  # b's passing replay is the latest event
        assert row["last_replay"] == "2026-01-05T00:00:00+00:00"
        assert row["last_replay_status"] == "pass"
        assert store.db["replays"].count == 2
        store.close()


def test_a_sighting_after_the_last_replay_reopens(two, tmp_path):
    a, b, ka, _ = two
    x = ka[1]
    _set(a, x, last_seen="2026-01-04T00:00:00+00:00")
    _replay(a, x, "2026-01-05T00:00:00+00:00", "pass", 0.0)
    _set(b, x, last_seen="2026-01-06T00:00:00+00:00", status="open")
    into = tmp_path / "c.db"
    _merge(into, a, b)
    store = CorpusStore(into)
    assert store.get(x)["status"] == "open"
    store.close()


def test_a_run_merged_while_running_gets_its_end_later(tmp_path):
    a = tmp_path / "a.db"
    store = CorpusStore(a)
    run = store.start_run(argv=["run"], profile="dev", seed=1, targets=["ops.rmsnorm"])
    store.record_finding(_finding(1), run_id=run)
    into = tmp_path / "c.db"
    _merge(into, a)
    store.finish_run(run, status="done", examples=7, findings=1, results=[])
    store.close()
    _merge(into, a)
    conn = sqlite3.connect(into)
    assert conn.execute("select status, examples from runs").fetchall() == [("done", 7)]
    conn.close()


def test_sources_are_only_read(two, tmp_path):
    a, b, _, _ = two

    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    before = {p: digest(p) for p in (a, b)}
    _merge(tmp_path / "c.db", a, b)
    assert {p: digest(p) for p in (a, b)} == before


def test_merge_into_itself_is_refused(two):
    a, _, _, _ = two
    store = CorpusStore(a)
    with pytest.raises(CorpusError, match="is the --into corpus itself"):
        merge_corpora(store, [a])
    store.close()


def test_cli_merge_reports_counts(kfuzz, two, tmp_path):
    a, b, _, _ = two
    into = tmp_path / "merged.db"
    res = kfuzz("corpus", "merge", a, b, "--into", into)
    assert res.code == 0, res.err
    assert res.out.splitlines()[0].split() == ["source", "new", "findings", "updated", "replays",
                                               "added", "runs", "added"]
    assert f"{into}: 3 findings" in res.out
    again = kfuzz("corpus", "merge", a, b, "--into", into, "--json").json()
    assert [s["findings_added"] + s["findings_updated"] for s in again["sources"]] == [0, 0]
    assert again["findings"] == 3


@pytest.mark.parametrize(
    "make, message",
    [
        (None, "kfuzz: error: no corpus at '{p}'; pass corpus database files to merge"),
        (lambda p: p.write_bytes(b"junk" * 400),
         "kfuzz: error: corpus '{p}' is not a usable SQLite database"),
        (lambda p: sqlite3.connect(p).execute("create table other (x)"),
         "kfuzz: error: '{p}' is not a kfuzz corpus (no findings table)"),
    ],
    ids=["missing", "garbage", "not-a-corpus"],
)
def test_cli_bad_source_is_one_line_exit_2(kfuzz, two, tmp_path, make, message):
    a, _, _, _ = two
    bad = tmp_path / "bad.db"
    if make:
        make(bad)
    into = tmp_path / "into.db"
    res = kfuzz("corpus", "merge", a, bad, "--into", into)
    assert res.code == 2
    assert res.err.startswith(message.format(p=bad)), res.err
    assert res.err.count("\n") == 1
    # Every source is checked before anything is merged, or --into even created.
    assert not into.exists()

"""The corpus: upsert by fingerprint, migrations, bad databases, replay statuses."""

from __future__ import annotations

import json
import sqlite3

import pytest
from kfuzz.corpus import CorpusStore
from kfuzz.errors import CorpusError
from kfuzz.executor import Outcome
from kfuzz.findings import Finding
from kfuzz.replay import replay

CASE = {"shape": [1, 4], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 1.0},
        "eps": 1e-6, "seed": 3}


def _finding(kind="shrunk", case=CASE, kernel="eager_lowp", replaces=None):
    metrics = {"mismatch_ratio": 0.5, "mismatches": 2, "numel": 4, "passed": False,
               "nonfinite_mismatches": 0}
    return Finding("ops.rmsnorm", kernel, "fp64", dict(case), Outcome("fail", {"y": metrics}),
                   kind, {"mode": "exact"}, replaces=replaces)


@pytest.fixture
def store(db_path):
    s = CorpusStore(db_path)
    yield s
    s.close()


def test_upsert_counts_sightings_and_keeps_the_best_kind(store):
    key = store.record_finding(_finding("peak"))
    store.record_finding(_finding("shrunk"))
    store.record_finding(_finding("raw"))
    row = store.get(key)
    assert row["times_seen"] == 3 and row["kind"] == "shrunk"
    assert row["case"] == CASE and row["comparator"] == {"mode": "exact"}
    assert store.count() == 1
    assert row["size"] == 8  # 1x4 x plus a weight of 4


def test_shrunk_finding_replaces_its_raw_row(store):
    raw = _finding("raw", case={**CASE, "shape": [9, 9]})
    store.record_finding(raw)
    store.record_finding(_finding("shrunk", replaces=raw.fingerprint))
    assert [r["kind"] for r in store.findings()] == ["shrunk"]


def test_schema_is_versioned_and_wal_is_on(db_path, store):
    conn = sqlite3.connect(db_path)
    names = [r[0] for r in conn.execute("select name from _sqlite_migrations")]
    assert names == ["m001_initial"]
    assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_json_columns_are_plain_json_text(db_path, store):
    store.record_finding(_finding())
    conn = sqlite3.connect(db_path)
    case_text, = conn.execute('select "case" from findings').fetchone()
    assert json.loads(case_text) == CASE


def test_not_a_database(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(CorpusError, match="is not a usable SQLite database"):
        CorpusStore(bad)
    assert bad.read_bytes() == b"this is not sqlite at all" * 100


def test_newer_schema_is_refused(db_path, store):
    store.db.execute("insert into _sqlite_migrations (migration_set, name, applied_at) "
                     "values ('kfuzz', 'm999_future', '2030-01-01')")
    store.close()
    with pytest.raises(CorpusError, match="has schema 'm999_future', newer than this kfuzz"):
        CorpusStore(db_path)


def test_resolve_id(store):
    key = store.record_finding(_finding())
    assert store.resolve_id(key[:6]) == key
    with pytest.raises(CorpusError, match="no finding 'ffffffffff'"):
        store.resolve_id("ffffffffff" if not key.startswith("ffff") else "0000000000")
    with pytest.raises(CorpusError, match="not a hex fingerprint prefix"):
        store.resolve_id("zz'; drop table findings")


def test_replay_marks_still_failing_fixed_and_error(store):
    failing = store.record_finding(_finding())
    passing = store.record_finding(_finding(kernel="eager_fp32"))
    store.db.execute("insert into findings (fingerprint, target, kernel, oracle, \"case\", "
                     "status, kind, times_seen) values ('ab', 'ops.gone', 'k', 'o', '{}', "
                     "'open', 'shrunk', 1)")
    store.db.execute("insert into findings (fingerprint, target, kernel, oracle, \"case\", "
                     "status, kind, times_seen) values ('cd', 'ops.rmsnorm', 'eager_lowp', "
                     "'fp64', '{not json', 'open', 'shrunk', 1)")
    results = {r.fingerprint: r for r in replay(store)}
    assert results[failing].status == "fail"
    assert results[passing].status == "pass"
    assert results["ab"].status == "error" and "no target 'ops.gone'" in results["ab"].error
    assert results["cd"].status == "error" and "malformed JSON" in results["cd"].error
    assert store.get(passing)["status"] == "fixed"
    assert store.get(failing)["status"] == "open"
    assert store.count() == 4  # nothing lost
    assert store.db["replays"].count == 4


def test_replay_cli_shows_error_rows_without_traceback(kfuzz, db_path, store):
    store.db.execute("insert into findings (fingerprint, target, kernel, oracle, \"case\", "
                     "status, kind, times_seen) values ('ab', 'ops.gone', 'k', 'o', '{}', "
                     "'open', 'shrunk', 1)")
    res = kfuzz("replay", "--db", db_path)
    assert res.code == 0
    assert "0 still failing, 0 fixed, 1 error" in res.out
    assert "Traceback" not in res.out + res.err


def test_cli_on_a_corrupt_corpus_is_one_line_exit_2(kfuzz, tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 1000)
    for argv in (["replay"], ["corpus", "list"], ["run", "ops.softmax", "--max-examples", "3"]):
        res = kfuzz(*argv, "--db", bad)
        assert res.code == 2, argv
        assert res.err.startswith(f"kfuzz: error: corpus '{bad}' is not a usable SQLite database")
        assert res.err.count("\n") == 1

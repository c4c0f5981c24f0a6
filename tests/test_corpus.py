"""The corpus: upsert by fingerprint, migrations, bad databases, replay statuses."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
import sqlite_utils
from kfuzz.enums import Failure, Kind, ReplayStatus, Status
from kfuzz.errors import CorpusError
from kfuzz.execute.executor import Outcome
from kfuzz.execute.findings import Finding
from kfuzz.store.corpus import CorpusStore
from kfuzz.store.replay import replay
from kfuzz.store.schema import migrations

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
    applied = conn.execute("select migration_set, name from _sqlite_migrations").fetchall()
    # One migration set, every migration of it applied, in order.
    assert applied == [("kfuzz", m.name) for m in migrations._migrations]
    assert applied[0] == ("kfuzz", "m001_initial")
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
    # A replay that could not run is not a pass: exit 3, unless the user accepts errors.
    assert res.code == 3
    assert "0 still failing, 0 fixed, 1 error" in res.out
    assert "Traceback" not in res.out + res.err
    assert kfuzz("replay", "--db", db_path, "--accept-errors").code == 0


def test_cli_on_a_corrupt_corpus_is_one_line_exit_2(kfuzz, tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 1000)
    for argv in (["replay"], ["corpus", "list"], ["run", "ops.softmax", "--max-examples", "3"]):
        res = kfuzz(*argv, "--db", bad)
        assert res.code == 2, argv
        assert res.err.startswith(f"kfuzz: error: corpus '{bad}' is not a usable SQLite database")
        assert res.err.count("\n") == 1


# --- one migration set, read-only opening, statuses as data --------------------------------------

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "tests" / "data" / "corpus.db"


def _old_corpus(path: Path) -> None:
    """A corpus as kfuzz wrote it before error fields were columns and before merge's ledger
    joined the one migration set: schema m001 only, merged into once (so carrying the
    "kfuzz-merge" set and its tables), holding an error, a crash, a timeout and a contract."""
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="m002_error_fields")
    db.table("merge_meta").create({"key": str, "value": str}, pk="key")
    db.table("merge_sightings").create({"fingerprint": str, "origin": str, "times_seen": int},
                                       pk=("fingerprint", "origin"))
    db.execute("insert into _sqlite_migrations (migration_set, name, applied_at) "
               "values ('kfuzz-merge', 'm001_merge_ledger', '2025-01-01')")
    db.execute("insert into merge_meta values ('origin', 'abc123')")
    db.execute("insert into merge_sightings values ('e1', 'def456', 3)")
    for key, failure, error in [
        ("e1", "error", "RuntimeError: CUDA out of memory: tried 2 GiB"),
        ("c1", "crash", "Crash: worker killed by SIGSEGV; stderr: boom"),
        ("c2", "crash", "Crash: worker exited with status 3; stderr: "),
        ("t1", "timeout", "Timeout: no result after 2.5s"),
        ("k1", "contract", "Contract: aliases-input: kernel 'k' returned output 'y' ..."),
        ("m1", "mismatch", None),
    ]:
        db["findings"].insert({"fingerprint": key, "target": "ops.softmax", "kernel": "k",
                               "oracle": "fp64", "case": "{}", "status": "open",
                               "kind": "shrunk", "failure": failure, "error": error,
                               "times_seen": 1})
    db.close()


def test_an_old_corpus_migrates_to_the_one_set_and_loses_nothing(tmp_path):
    path = tmp_path / "old.db"
    _old_corpus(path)
    with CorpusStore(path) as store:
        assert store.integrity_check() == "ok"
        rows = {r["fingerprint"]: r for r in store.findings()}
        sets = {r[0] for r in store.db.execute("select migration_set from _sqlite_migrations")}
        ledger = list(store.db.execute("select * from merge_sightings"))
        origin = list(store.db.execute("select value from merge_meta"))
    assert sets == {"kfuzz"}
    assert ledger == [("e1", "def456", 3)] and origin == [("abc123",)]
    assert len(rows) == 6
    fields = {k: (r["error_type"], r["signal"], r["exit_code"], r["timeout"]) for k, r in rows.items()}
    assert fields == {
        "e1": ("RuntimeError", None, None, None),
        "c1": (None, "SIGSEGV", None, None),
        "c2": (None, None, 3, None),
        "t1": (None, None, None, 2.5),
        "k1": ("aliases-input", None, None, None),
        "m1": (None, None, None, None),
    }
    assert rows["e1"]["error"] == "RuntimeError: CUDA out of memory: tried 2 GiB"  # text kept


def test_a_fresh_corpus_has_the_merge_tables_too(store):
    assert store.db.table("merge_meta").exists() and store.db.table("merge_sightings").exists()


def test_read_only_open_writes_nothing(tmp_path):
    path = tmp_path / "old.db"
    _old_corpus(path)
    before = path.read_bytes()
    with CorpusStore(path, read_only=True) as store:
        assert {r["fingerprint"] for r in store.findings(status="open")} == {
            "e1", "c1", "c2", "t1", "k1", "m1"}
        assert store.replays() == [] and store.runs() == []
        with pytest.raises(CorpusError, match="opened read-only"):
            store.record_replay("e1", status="pass", kernel="k", oracle="fp64", outcome=None,
                                error=None)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.db"]


def test_read_only_open_refuses_what_is_not_a_corpus(tmp_path):
    with pytest.raises(CorpusError, match="^no corpus at"):
        CorpusStore(tmp_path / "missing.db", read_only=True)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("create table t (x)").connection.commit()
    with pytest.raises(CorpusError, match="is not a kfuzz corpus"):
        CorpusStore(other, read_only=True)


def test_the_committed_corpus_loads_migrates_and_replays_the_same(tmp_path):
    with CorpusStore(COMMITTED, read_only=True) as store:
        stored = {r["fingerprint"]: (r["status"], r["failure"]) for r in store.findings()}
    path = tmp_path / "corpus.db"
    path.write_bytes(COMMITTED.read_bytes())
    with CorpusStore(path) as store:
        assert {r["fingerprint"]: (r["status"], r["failure"]) for r in store.findings()} == stored
        verdicts = {r.fingerprint: r.status for r in replay(store)}
        assert store.integrity_check() == "ok"
        statuses = {r["fingerprint"]: r["status"] for r in store.findings()}
    assert sorted(stored.values()) == [("fixed", "mismatch"), ("open", "mismatch")]
    # The open finding still fails, the fixed one still passes: same verdicts as when made.
    assert {k: v.value for k, v in verdicts.items()} == {
        k: {"open": "fail", "fixed": "pass"}[s] for k, (s, _) in stored.items()}
    assert statuses == {k: s for k, (s, _) in stored.items()}


def test_statuses_kinds_and_failures_are_enums_stored_as_their_words(db_path, store):
    finding = _finding("peak")
    assert finding.kind is Kind.PEAK and finding.failure is Failure.MISMATCH
    assert finding.outcome.status is Status.FAIL and finding.outcome.to_dict()["status"] == "fail"
    assert type(finding.outcome.to_dict()["status"]) is str
    store.record_finding(finding)
    conn = sqlite3.connect(db_path)
    row = conn.execute("select kind, failure, status, typeof(kind) from findings").fetchone()
    assert row == ("peak", "mismatch", "open", "text")
    results = replay(store)
    assert results[0].status is ReplayStatus.FAIL and results[0].to_dict()["status"] == "fail"
    assert conn.execute("select status, typeof(status) from replays").fetchone() == ("fail", "text")


def test_replay_gives_a_timeout_finding_its_stored_limit(store):
    # The limit comes from the stored column, not from the error text.
    outcome = Outcome(Status.TIMEOUT, error="Timeout: (the text is not read)", timeout=1.5)
    key = store.record_finding(Finding("ops.softmax", "tests.faulty_kernels:crash_hang", "fp64",
                                       {"shape": [1, 7], "dtype": "bfloat16",
                                        "x": {"kind": "normal", "scale": 1.0}, "seed": 1},
                                       outcome, "shrunk"))
    assert store.get(key)["timeout"] == 1.5 and store.get(key)["failure"] == "timeout"
    start = time.monotonic()
    result, = replay(store)
    assert time.monotonic() - start < 120  # the stored 1.5 s limit ended it
    assert result.status == "fail" and result.error == "Timeout: no result after 1.5s"

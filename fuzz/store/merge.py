"""`kfuzz corpus merge A.db B.db ... --into PATH`: merge corpora from several machines.

Merging is idempotent (merging a source again, or a corpus that already holds what it
carries, changes nothing), commutative and associative, so nightly jobs can merge whatever
corpora they have, as often as they like, in any order:

- findings: one row per fingerprint. first_seen is the earliest, last_seen the latest, and
  the columns of a sighting (metrics, mismatch ratio, error, versions, last_run, ...) come
  from the row seen last, with its case (and size, shrink record, signature) when that row
  holds another one (a smaller case or a worse peak replaced its first). Rows of two corpora
  with one signature but different fingerprints stay two rows. status comes from the row
  whose latest event (sighting or replay) is the most recent; kind is the best (shrunk >
  peak > raw). Ties keep the --into row.
- times_seen: every corpus counts its own sightings once. Each merged corpus keeps, per
  fingerprint, the count contributed by each origin corpus (table `merge_sightings`), and a
  merge takes the larger count per origin, never the sum of two copies: merging A into B and
  B into C and A into C again counts A's sightings once.
- replays: copied, except those already present (same finding, time, status, kernel,
  oracle, ratio, metrics and error).
- runs: copied with new ids, except those already present (same start, argv, versions,
  targets, seed and profile); a copied finding's first_run/last_run follow them.

An origin corpus is named by an id kept in its `merge_meta` table once it has been merged
into; a corpus that never was is named by its first run (or, without runs, its earliest
finding), which does not change while it grows. Sources are opened read-only. Limitation:
two copies of one corpus that then grow apart share its origin id, so their sightings merge
as the larger of the two counts, not the sum: start each machine's corpus afresh (not from
a copy of another's) to count every sighting.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils
from kfuzz.errors import CorpusError
from kfuzz.store.corpus import KIND_RANK, CorpusStore
from kfuzz.store.schema import fill_substitute

# Columns that describe one sighting: taken together from the row seen last.
SIGHTING_COLUMNS = ("failure", "metrics", "error", "error_type", "signal", "exit_code", "timeout",
                    "mismatch_ratio", "device", "versions", "plugins")
# Columns that describe a row's case, besides its sighting's: taken with the case.
CASE_COLUMNS = ("case", "size", "shrink", "signature")
REPLAY_KEY = ("fingerprint", "at", "status", "kernel", "oracle", "mismatch_ratio", "metrics",
              "error")
RUN_KEY = ("started", "argv", "versions", "targets", "seed", "profile")
FINISH_COLUMNS = ("finished", "status", "examples", "findings", "results")


@dataclass
class MergeStats:
    """What merging one source did."""

    source: str
    findings_added: int = 0
    findings_updated: int = 0
    replays_added: int = 0
    runs_added: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dict(self.__dict__)


def _open_source(path: Path) -> CorpusStore:
    """A source corpus, read-only. Raises CorpusError naming the path and the fix."""
    if not path.is_file():
        raise CorpusError(f"no corpus at {str(path)!r}; pass corpus database files to merge")
    return CorpusStore(path, read_only=True)


def _rows(conn: Any, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
    if isinstance(conn, sqlite_utils.Database):
        return list(conn.query(sql, list(args)))
    return [dict(r) for r in conn.execute(sql, list(args))]


def _has_table(conn: Any, name: str) -> bool:
    return bool(list(conn.execute("select 1 from sqlite_master where type='table' and name=?",
                                  [name])))


def _derived_origin(conn: Any) -> str | None:
    """An id for a corpus that has none stored: from its first run, else its earliest
    finding; None for an empty corpus."""
    runs = _rows(conn, "select started, argv, versions from runs order by id limit 1")
    if runs:
        blob = json.dumps(["run", runs[0]["started"], runs[0]["argv"], runs[0]["versions"]])
    else:
        first = _rows(conn, "select first_seen, fingerprint from findings "
                            "order by first_seen, fingerprint limit 1")
        if not first:
            return None
        blob = json.dumps(["finding", first[0]["first_seen"], first[0]["fingerprint"]])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def corpus_origin(conn: Any) -> str | None:
    """The origin id of an open corpus connection (sqlite3 or sqlite_utils), or None for an
    empty corpus that was never merged into."""
    if _has_table(conn, "merge_meta"):
        rows = _rows(conn, "select value from merge_meta where key = 'origin'")
        if rows:
            return str(rows[0]["value"])
    return _derived_origin(conn)


def _ledger(conn: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    if _has_table(conn, "merge_sightings"):
        for r in _rows(conn, "select fingerprint, origin, times_seen from merge_sightings"):
            out.setdefault(r["fingerprint"], {})[r["origin"]] = int(r["times_seen"] or 0)
    return out


def check_sources(sources: Sequence[str | Path]) -> None:
    """Check that each path is a kfuzz corpus this kfuzz can read, without writing to it.
    Raises CorpusError naming the first that is not."""
    for source in sources:
        _open_source(Path(source)).close()


def merge_corpora(into: CorpusStore, sources: Sequence[str | Path]) -> list[MergeStats]:
    """Merge each corpus in `sources` into `into`, one transaction per source; returns one
    MergeStats each. Raises CorpusError for a source that is missing, not a kfuzz corpus, of
    a newer schema, or the --into corpus itself."""
    paths = [Path(s) for s in sources]
    for path in paths:
        if path.exists() and path.resolve() == into.path.resolve():
            raise CorpusError(f"{str(path)!r} is the --into corpus itself; merge other corpora "
                              "into it")
    sources_open = [_open_source(p) for p in paths]  # every source checked before anything changes
    try:
        return [_merge_one(into, src.db, str(path))
                for src, path in zip(sources_open, paths, strict=True)]
    finally:
        for src in sources_open:
            src.close()


def _merge_one(into: CorpusStore, src: sqlite_utils.Database, name: str) -> MergeStats:
    db = into.db
    stats = MergeStats(name)
    with into.transaction():
        own = corpus_origin(db)
        if own is None or not _rows(db, "select 1 from merge_meta where key = 'origin'"):
            # Fixed now, before the merge brings in rows that would change a derived id.
            own = own or uuid.uuid4().hex[:16]
            db.execute("insert or replace into merge_meta (key, value) values ('origin', ?)",
                       [own])
        origin = corpus_origin(src)
        run_ids = _merge_runs(db, src, stats)
        src_ledger = _ledger(src)
        ledger = _ledger(db)
        columns = {c.name for c in db.table("findings").columns}
        for row in _rows(src, "select * from findings order by fingerprint"):
            key = row["fingerprint"]
            counts = dict(src_ledger.get(key, {}))
            local = int(row.get("times_seen") or 0) - sum(counts.values())
            if origin is not None and local > 0:
                counts[origin] = max(counts.get(origin, 0), local)
            # This corpus counts its own sightings itself; a source can only carry an older
            # count of them, or a copy's that grew apart (see the module docstring).
            own_count = counts.pop(own, 0)
            _merge_finding(db, row, counts, own_count, ledger.get(key, {}), run_ids, columns,
                           stats)
        _merge_replays(db, src, stats)
        _refresh_replay_columns(db, src)
    return stats


def _merge_runs(db: sqlite_utils.Database, src: Any, stats: MergeStats) -> dict[int, int]:
    """Copy the source's runs that are new here; returns source run id -> id here."""
    key_sql = " and ".join(f"{c} is ?" for c in RUN_KEY)
    mapping: dict[int, int] = {}
    for run in _rows(src, "select * from runs order by id"):
        found = list(db.execute(f"select id, finished from runs where {key_sql}",
                                [run.get(c) for c in RUN_KEY]))
        if found:
            mapping[run["id"]] = found[0][0]
            if found[0][1] is None and run.get("finished") is not None:
                # Merged while it was still running; it has finished since.
                db.table("runs").update(found[0][0], {c: run.get(c) for c in FINISH_COLUMNS})
            continue
        values = {k: v for k, v in run.items() if k != "id"}
        cursor = db.execute(
            f"insert into runs ({', '.join(values)}) values ({', '.join('?' * len(values))})",
            list(values.values()))
        mapping[run["id"]] = int(cursor.lastrowid or 0)
        stats.runs_added += 1
    return mapping


def _latest_event(row: dict[str, Any]) -> str:
    return max(str(row.get("last_seen") or ""), str(row.get("last_replay") or ""))


def _merge_finding(db: sqlite_utils.Database, src: dict[str, Any], counts: dict[str, int],
                   own_count: int, ledger: dict[str, int], run_ids: dict[int, int],
                   columns: set[str], stats: MergeStats) -> None:
    key = src["fingerprint"]
    for o, n in counts.items():
        if n > ledger.get(o, 0):
            db.execute("insert or replace into merge_sightings (fingerprint, origin, times_seen) "
                       "values (?, ?, ?)", [key, o, n])
    merged_counts = {**ledger, **{o: max(n, ledger.get(o, 0)) for o, n in counts.items()}}
    for field in ("first_run", "last_run"):
        src[field] = run_ids.get(src[field]) if src.get(field) is not None else None
    existing = list(db.query("select * from findings where fingerprint = ?", [key]))
    if not existing:
        row = {k: v for k, v in src.items() if k in columns}
        row["times_seen"] = own_count + sum(merged_counts.values())
        db.table("findings").insert(row)
        stats.findings_added += 1
        return
    mine = existing[0]
    own = max(int(mine.get("times_seen") or 0) - sum(ledger.values()), own_count, 0)
    update: dict[str, Any] = {"times_seen": own + sum(merged_counts.values())}
    if str(src.get("first_seen") or "~") < str(mine.get("first_seen") or "~"):
        update.update(first_seen=src["first_seen"], first_run=src["first_run"])
    if str(src.get("last_seen") or "") > str(mine.get("last_seen") or ""):
        update.update({c: src.get(c) for c in SIGHTING_COLUMNS if c in columns},
                      last_seen=src["last_seen"], last_run=src["last_run"])
        if src.get("case") != mine.get("case"):
            # The source's row took another case (a smaller shrunk case or a worse peak of
            # its signature): its metrics describe that one, so it comes along.
            update.update({c: src.get(c) for c in CASE_COLUMNS if c in columns})
    if _latest_event(src) > _latest_event(mine):
        update["status"] = src.get("status")
    if KIND_RANK.get(src.get("kind") or "", -1) > KIND_RANK.get(mine.get("kind") or "", -1):
        update["kind"] = src["kind"]
    for column in ("shrink", "size", "comparator", "signature"):
        if mine.get(column) is None and src.get(column) is not None:
            update[column] = src[column]
    update = {k: v for k, v in update.items() if mine.get(k) != v}
    if update:
        db.table("findings").update(key, update)
        stats.findings_updated += 1


def _merge_replays(db: sqlite_utils.Database, src: Any, stats: MergeStats) -> None:
    have = {tuple(r) for r in db.execute(f"select {', '.join(REPLAY_KEY)} from replays")}
    known = {r[0] for r in db.execute("select fingerprint from findings")}
    for replay in _rows(src, "select * from replays order by id"):
        key = tuple(replay.get(c) for c in REPLAY_KEY)
        if key in have or replay["fingerprint"] not in known:
            continue
        values = {k: v for k, v in replay.items() if k != "id"}
        db.execute(
            f"insert into replays ({', '.join(values)}) values ({', '.join('?' * len(values))})",
            list(values.values()))
        have.add(key)
        stats.replays_added += 1
    fill_substitute(db)  # replays from a corpus written before the flag existed


def _refresh_replay_columns(db: sqlite_utils.Database, src: Any) -> None:
    """last_replay, last_replay_status and last_replay_kernel of the findings the source
    touched: those of their latest replay here."""
    for (key,) in src.execute("select distinct fingerprint from replays"):
        # A substitute replay (another kernel or oracle) says nothing of the finding itself.
        latest = list(db.query("select at, status, kernel from replays where fingerprint = ? "
                               "and not coalesce(substitute, 0) "
                               "order by at desc, id desc limit 1", [key]))
        if not latest:
            continue
        db.execute("update findings set last_replay = ?, last_replay_status = ?, "
                   "last_replay_kernel = ? where fingerprint = ?",
                   [latest[0]["at"], latest[0]["status"], latest[0]["kernel"], key])

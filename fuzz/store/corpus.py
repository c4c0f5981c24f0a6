"""The corpus: a SQLite database of findings, runs and replays (sqlite-utils).

Tables
  findings         one row per distinct finding, keyed by its fingerprint (sha256 of target,
                   kernel, oracle, case); a rediscovered case updates its row (times_seen,
                   last_seen), and so does a new shrunk case with the signature of an open
                   shrunk finding, or a run's peak (`CorpusStore.record_findings`).
  runs             one row per `kfuzz run`.
  replays          one row per replay of a finding.
  merge_meta       this corpus's origin id once it has been merged into (`kfuzz.store.merge`).
  merge_sightings  per finding, the sightings each merged-in corpus counted (`kfuzz.store.merge`).
JSON columns (case, comparator, metrics, shrink, versions, ...) hold plain JSON text, readable
with `sqlite-utils` and datasette. Nothing is pickled or evaluated: loading a corpus runs no
code. WAL is on and every write is a short transaction, so several processes can share a file.

`CorpusStore` is the only code that speaks SQL to a corpus (with `kfuzz.store.merge`, which works
through a store's connection and transaction); everything else calls its methods. The schema
is one versioned migration set; a corpus written by an older kfuzz is migrated when opened for
writing, and read as it is when opened read-only.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils
from kfuzz.enums import FindingStatus, Kind, ReplayStatus
from kfuzz.errors import CorpusError
from kfuzz.store.connect import READ_ONLY_FIX, check_writable, connect_read_only, open_error
from kfuzz.store.rows import (
    RUN_JSON_COLUMNS,
    case_size,
    decode_row,
    dumps,
    loaded_plugins,
    loads_or,
    now,
    plugins_for,
    short_id,
    versions,
)
from kfuzz.store.schema import TABLES, migrations

if TYPE_CHECKING:
    from kfuzz.execute.findings import Finding

DEFAULT_DB = "corpus/corpus.db"
KIND_RANK = {kind.value: kind.rank for kind in Kind}
# The findings columns of a sighting that describe the run, not the case (`_upsert`).
SIGHTING_COLUMNS = ("status", "device", "versions", "last_seen", "last_run", "plugins")
class CorpusStore:
    """A corpus database.

    Args:
        path: the database file.
        read_only: open without writing anything (no migration, no WAL switch): for commands
            that only read and for corpora that must stay untouched (a merge source, a
            committed corpus). Writing methods then raise CorpusError. A corpus this process
            cannot write (a read-only file, folder or file system) opens read-only as it is,
            creating no -wal or -shm file beside it (see `kfuzz.store.connect`).
        create: False raises CorpusError when the file does not exist (read_only implies it).
            A new corpus is created only in an existing folder (but the default corpus/).
        fix: what to tell the user when the corpus cannot be written (default: copy it
            somewhere writable and pass --db).

    Raises:
        CorpusError: when the file is a directory, is not a SQLite database, is not a kfuzz
            corpus (read-only), does not exist (create=False), was written by a newer kfuzz,
            cannot be written (not read_only: read-only, or a new one in a missing or
            read-only folder; nothing is written then).
    """

    def __init__(self, path: str | Path = DEFAULT_DB, *, read_only: bool = False,
                 create: bool = True, fix: str | None = None) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if self.path.exists() and self.path.is_dir():
            raise CorpusError(f"corpus {str(self.path)!r} is a directory; pass a file to --db")
        if (read_only or not create) and not self.path.exists():
            raise CorpusError(f"no corpus at {str(self.path)!r}; pass --db PATH")
        if not read_only:
            check_writable(self.path, fix or READ_ONLY_FIX, default=Path(DEFAULT_DB))
        try:
            if read_only:
                conn = connect_read_only(self.path)
            else:
                if self.path == Path(DEFAULT_DB):
                    self.path.parent.mkdir(parents=True, exist_ok=True)  # kfuzz's own folder
                conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA busy_timeout = 60000")
            if read_only:
                missing = [t for t in TABLES if not self.db.table(t).exists()]
                if missing:
                    conn.close()
                    raise CorpusError(
                        f"{str(self.path)!r} is not a kfuzz corpus (no {missing[0]} table); "
                        "pass a corpus database written by kfuzz"
                    )
                self._check_schema()
                return
            # Under WAL, NORMAL keeps every committed transaction through a process crash or
            # SIGKILL (only a power loss can drop the last ones) and halves the cost of the
            # one-transaction-per-finding writes of a run.
            self.db.execute("PRAGMA synchronous = NORMAL")
            self._check_schema()
            if self.db.journal_mode != "wal":
                self.db.enable_wal()
            migrations.apply(self.db)
        except sqlite3.DatabaseError as exc:
            raise open_error(self.path, exc, fix or READ_ONLY_FIX) from None

    def _check_schema(self) -> None:
        known = {m.name for m in migrations._migrations}
        applied = {m.name for m in migrations.applied(self.db)}
        newer = sorted(applied - known)
        if newer:
            raise CorpusError(
                f"corpus {str(self.path)!r} has schema {newer[-1]!r}, newer than this kfuzz "
                "knows; upgrade kfuzz to read it"
            )

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self) -> CorpusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on an exception).
        Raises CorpusError on a read-only store."""
        if self.read_only:
            raise CorpusError(f"corpus {str(self.path)!r} was opened read-only")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _columns(self, table: str) -> set[str]:
        return {c.name for c in self.db.table(table).columns}

    def integrity_check(self) -> str:
        """SQLite's `pragma integrity_check`: "ok" for a sound file, else the problems."""
        return "\n".join(str(r[0]) for r in self.db.execute("pragma integrity_check"))

    def copy_to(self, target: str | Path) -> None:
        """A consistent copy of the database at `target` (SQLite's backup API, safe while
        another process writes)."""
        dst = sqlite3.connect(str(target))
        try:
            self.db.conn.backup(dst)
        finally:
            dst.close()

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, *, argv: list[str], profile: str, seed: int | None,
                  targets: list[str], device: str = "cpu") -> int:
        """Record a run's start, with the plugins loaded in this process; returns its id."""
        with self.transaction():
            table = self.db["runs"]
            table.insert({  # type: ignore[union-attr]
                "started": now(), "argv": dumps(argv), "profile": profile, "seed": seed,
                "targets": dumps(targets), "status": "running", "examples": 0, "findings": 0,
                "versions": dumps(versions(device)), "plugins": dumps(loaded_plugins()),
            })
            return int(table.last_pk)  # type: ignore[union-attr, arg-type]

    def finish_run(self, run_id: int, *, status: str, examples: int, findings: int,
                   results: list[dict[str, Any]]) -> None:
        """Record a run's end."""
        with self.transaction():
            self.db["runs"].update(run_id, {  # type: ignore[union-attr]
                "finished": now(), "status": status, "examples": examples,
                "findings": findings, "results": dumps(results),
            })

    def runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first, JSON columns decoded (argv, targets, results as lists,
        versions as a dict; an empty or malformed column reads as empty)."""
        out = []
        for run in self.db.query("select * from runs order by id"):
            for column in RUN_JSON_COLUMNS:
                run[column] = loads_or(run.get(column), {} if column == "versions" else [])
            out.append(run)
        return out

    # -- findings --------------------------------------------------------------------------

    def record_findings(self, findings: Iterable[Finding], *, run_id: int | None = None) -> list[str]:
        """Upsert findings in one transaction; returns the ids of the rows they went to.
        A rediscovered case (same fingerprint) gets times_seen + 1, new metrics and status
        "open". A shrunk finding whose signature (`Finding.signature`), target, kernel, oracle
        and comparator match an open shrunk row updates that row instead (times_seen + 1,
        last_seen, last_run, versions; a smaller case replaces its case, metrics and shrink
        record), and a peak updates the open peak row of its target, kernel, oracle and
        comparator (a worse case, by mismatch ratio then mismatches, replaces its case and
        metrics): a row keeps its id, the fingerprint of the first case stored in it. A
        shrunk finding deletes the raw row it replaces, however many runs stored that raw
        case (two runs with one seed both do): it stands for that case now. Each row records
        the loaded plugins that registered its target (see `targets.plugins_for`), which
        replay, report and export load again. Sets each finding's `stored_as` to the id of
        its row."""
        stamp = now()
        done = []
        with self.transaction():
            for finding in findings:
                done.append((finding, self._upsert(finding, run_id, stamp)))
        for finding, key in done:
            finding.stored_as = key
        return [key for _, key in done]

    def record_finding(self, finding: Finding, *, run_id: int | None = None) -> str:
        """`record_findings` for one finding."""
        return self.record_findings([finding], run_id=run_id)[0]

    def _upsert(self, finding: Finding, run_id: int | None, stamp: str) -> str:
        key = finding.fingerprint
        table = self.db.table("findings")
        outcome = finding.outcome
        comparator = dumps(finding.comparator)
        row = {
            "target": finding.target, "kernel": finding.kernel, "oracle": finding.oracle,
            "failure": finding.failure.value, "status": FindingStatus.OPEN.value,
            "metrics": dumps(outcome.to_dict()["outputs"]), "error": outcome.error,
            "error_type": outcome.error_type, "signal": outcome.signal,
            "exit_code": outcome.exit_code, "timeout": outcome.timeout,
            "mismatch_ratio": outcome.worst_ratio(), "device": finding.device,
            "versions": dumps(versions(finding.device)), "last_seen": stamp, "last_run": run_id,
            "plugins": dumps(plugins_for(finding.target)), "signature": finding.signature,
            "attribution": dumps(finding.attribution),
        }
        existing = list(self.db.query('select kind, times_seen, "case" from findings where '
                                      "fingerprint = ?", [key]))
        same = None
        # A case stored before keeps its row (a shrunk one, or any row for a peak); else a
        # shrunk finding or a peak goes to the open row of the same failure, if any.
        if (finding.kind == Kind.SHRUNK and finding.signature is not None
                and not (existing and existing[0]["kind"] == "shrunk")
                or finding.kind == Kind.PEAK and not existing):
            same = self._same_failure(finding, key, comparator)
        if same is not None:
            # One row per bug: the open row of this failure takes the sighting.
            held = same["fingerprint"]
            again = 0 if finding.replaces == held else 1
            update = {k: row[k] for k in SIGHTING_COLUMNS}
            update["times_seen"] = (same["times_seen"] or 0) + again
            size = case_size(finding)
            if self._better(finding, size, same):
                update.update({k: v for k, v in row.items() if k not in update},
                              case=dumps(finding.case), size=size)
                if finding.kind == Kind.SHRUNK:
                    update["shrink"] = dumps(finding.shrink or None)
            table.update(held, update)
            key = held
        elif existing:
            old_kind = existing[0]["kind"]
            kind = max(old_kind, finding.kind.value, key=lambda k: KIND_RANK.get(k, -1))
            # A shrunk case that shrank to its own raw case is one sighting, not two.
            again = 0 if finding.replaces == key else 1
            row.update(kind=kind, times_seen=existing[0]["times_seen"] + again)
            if existing[0]["case"] != dumps(finding.case):
                # The row's first case, since replaced by a smaller or worse one: a sighting
                # of the row, whose columns keep describing the case it holds.
                row = {k: row[k] for k in (*SIGHTING_COLUMNS, "kind", "times_seen")}
            elif finding.shrink:
                row["shrink"] = dumps(finding.shrink)
            table.update(key, row)
        else:
            row.update(
                fingerprint=key, kind=finding.kind.value, case=dumps(finding.case),
                comparator=comparator, shrink=dumps(finding.shrink or None),
                size=case_size(finding), first_seen=stamp, first_run=run_id, times_seen=1,
            )
            table.insert(row)
        if finding.replaces and finding.replaces != key:
            # Whoever stored the raw case (two runs with one seed store the same one, and so
            # count it twice), this shrunk case stands for it now.
            self.db.execute("delete from findings where fingerprint = ? and kind = 'raw'",
                            [finding.replaces])
        return key

    def _same_failure(self, finding: Finding, key: str,
                      comparator: str | None) -> dict[str, Any] | None:
        """The open row besides its own that `finding` (shrunk or peak) belongs to: for a
        shrunk finding the oldest open shrunk row with its target, kernel, oracle, comparator
        and signature; for a peak the oldest open peak row of its target, kernel, oracle and
        comparator. None when there is none."""
        where = ("target = ? and kernel = ? and oracle = ? and comparator is ? and kind = ? "
                 "and status = 'open' and fingerprint != ?")
        args: list[Any] = [finding.target, finding.kernel, finding.oracle, comparator,
                           finding.kind.value, key]
        if finding.kind == Kind.SHRUNK:
            where += " and signature = ?"
            args.append(finding.signature)
        rows = list(self.db.query(
            "select fingerprint, times_seen, size, mismatch_ratio, metrics from findings "
            f"where {where} order by first_seen, fingerprint limit 1", args))
        return rows[0] if rows else None

    @staticmethod
    def _better(finding: Finding, size: int | None, held: dict[str, Any]) -> bool:
        """Whether `finding`'s case replaces the one stored in `held`: a shrunk case when it
        is smaller, a peak when it is worse (mismatch ratio, then mismatched elements)."""
        if finding.kind == Kind.SHRUNK:
            return size is not None and held["size"] is not None and size < held["size"]
        try:
            stored = json.loads(held["metrics"] or "{}")
            mismatches = sum(int(m.get("mismatches") or 0) for m in stored.values())
        except (TypeError, ValueError, AttributeError):
            mismatches = 0
        outputs = finding.outcome.outputs.values()
        new = (finding.outcome.worst_ratio(), sum(int(m["mismatches"]) for m in outputs))
        return new > (float(held["mismatch_ratio"] or 0.0), mismatches)

    def resolve_id(self, prefix: str) -> str:
        """The full fingerprint that starts with `prefix`. Raises CorpusError when none or
        several do."""
        if not prefix or any(c not in "0123456789abcdef" for c in prefix.lower()):
            raise CorpusError(f"finding id {prefix!r} is not a hex fingerprint prefix")
        rows = [r["fingerprint"] for r in self.db.query(
            "select fingerprint from findings where fingerprint like ? limit 2",
            [prefix.lower() + "%"])]
        if not rows:
            raise CorpusError(f"no finding {prefix!r} in {str(self.path)!r}; see `kfuzz corpus list`")
        if len(rows) > 1:
            raise CorpusError(f"finding id {prefix!r} is ambiguous; give more characters")
        return rows[0]

    def raw(self, fingerprint: str) -> dict[str, Any]:
        """One findings row as stored (JSON columns as text). Raises CorpusError when absent."""
        rows = list(self.db.query("select * from findings where fingerprint = ?", [fingerprint]))
        if not rows:
            raise CorpusError(f"no finding {short_id(fingerprint)!r} in {str(self.path)!r}")
        return rows[0]

    def get(self, fingerprint: str) -> dict[str, Any]:
        """One finding, JSON columns decoded. Raises CorpusError when absent or malformed."""
        return decode_row(self.raw(fingerprint))

    def findings(self, *, target: str | None = None, status: str | None = None,
                 kernel: str | None = None, failure: str | None = None,
                 kind: str | None = None, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Raw finding rows (JSON columns as text), newest first, optionally filtered (a
        filter is an exact value of its column)."""
        where, args = [], []
        for column, value in (("target", target), ("status", status), ("kernel", kernel),
                              ("failure", failure), ("kind", kind)):
            if value:
                where.append(f"{column} = ?")
                args.append(str(value))  # an enum member is its word
        sql = "select * from findings"
        if where:
            sql += " where " + " and ".join(where)
        sql += " order by last_seen desc, fingerprint"
        if limit:
            sql += f" limit {int(limit)}"
        yield from self.db.query(sql, args)

    def count(self) -> int:
        """Number of findings."""
        return self.db["findings"].count

    def distinct(self, column: str) -> list[str]:
        """The values a findings column holds, sorted (e.g. every target with a finding).
        Raises CorpusError for a column findings do not have."""
        if column not in self._columns("findings"):
            raise CorpusError(f"findings have no column {column!r}")
        return [r[0] for r in self.db.execute(
            f"select distinct [{column}] from findings where [{column}] is not null order by 1")]

    def delete(self, fingerprints: Iterable[str]) -> int:
        """Delete findings with their replays and merge ledger rows, in one transaction;
        returns how many findings were deleted."""
        keys = list(dict.fromkeys(fingerprints))
        deleted = 0
        with self.transaction():
            for key in keys:
                self.db.execute("delete from replays where fingerprint = ?", [key])
                self.db.execute("delete from merge_sightings where fingerprint = ?", [key])
                deleted += self.db.execute("delete from findings where fingerprint = ?",
                                           [key]).rowcount
        return deleted

    # -- replays ---------------------------------------------------------------------------

    def record_replay(self, fingerprint: str, *, status: ReplayStatus | str, kernel: str,
                      oracle: str, outcome: dict[str, Any] | None, error: str | None) -> bool:
        """Record one replay. With the finding's own kernel and oracle it updates the
        finding's status ("fail" -> open, "pass" -> fixed, "error" leaves it); with another
        kernel or oracle it is recorded as a substitute replay and leaves the finding alone.
        Returns True for a substitute replay."""
        status = ReplayStatus(status)
        stamp = now()
        ratio = None
        if outcome and outcome.get("outputs"):
            ratio = max(m["mismatch_ratio"] for m in outcome["outputs"].values())
        with self.transaction():
            own = self.raw(fingerprint)
            substitute = kernel != own.get("kernel") or oracle != own.get("oracle")
            self.db["replays"].insert({  # type: ignore[union-attr]
                "fingerprint": fingerprint, "at": stamp, "status": status.value, "kernel": kernel,
                "oracle": oracle, "mismatch_ratio": ratio,
                "metrics": dumps(outcome.get("outputs") if outcome else None), "error": error,
                "substitute": int(substitute),
            })
            if substitute:
                return True
            update = {"last_replay": stamp, "last_replay_status": status.value,
                      "last_replay_kernel": kernel}
            if status in (ReplayStatus.FAIL, ReplayStatus.PASS):
                update["status"] = (FindingStatus.OPEN if status == ReplayStatus.FAIL
                                    else FindingStatus.FIXED).value
            self.db.table("findings").update(fingerprint, update)
        return False

    def replays(self, fingerprint: str | None = None, *, newest_first: bool = False,
                limit: int | None = None) -> list[dict[str, Any]]:
        """Replay rows (metrics as JSON text), of one finding or all, oldest first unless
        newest_first."""
        sql = "select * from replays"
        args: list[Any] = []
        if fingerprint is not None:
            sql += " where fingerprint = ?"
            args.append(fingerprint)
        sql += " order by at desc, id desc" if newest_first else " order by at, id"
        if limit:
            sql += f" limit {int(limit)}"
        return list(self.db.query(sql, args))

    def count_replays(self) -> int:
        """Number of replays recorded."""
        return self.db["replays"].count



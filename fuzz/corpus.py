"""The corpus: a SQLite database of findings, runs and replays (sqlite-utils).

Tables
  findings  one row per distinct finding, keyed by its fingerprint (sha256 of target, kernel,
            oracle, case); a rediscovered case updates its row (times_seen, last_seen).
  runs      one row per `kfuzz run`.
  replays   one row per replay of a finding.
JSON columns (case, comparator, metrics, shrink, versions, ...) hold plain JSON text, readable
with `sqlite-utils` and datasette. Nothing is pickled or evaluated: loading a corpus runs no
code. WAL is on and every write is a short transaction, so several processes can share a file.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils
from kfuzz.errors import CorpusError
from kfuzz.findings import Finding
from sqlite_utils.migrations import Migrations

DEFAULT_DB = "corpus/corpus.db"
JSON_COLUMNS = ("case", "comparator", "metrics", "shrink", "versions")
KIND_RANK = {"raw": 0, "peak": 1, "shrunk": 2}

migrations = Migrations("kfuzz")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.table("findings").create(
        {
            "fingerprint": str, "target": str, "kernel": str, "oracle": str, "kind": str,
            "failure": str, "status": str, "case": str, "comparator": str, "metrics": str,
            "error": str, "mismatch_ratio": float, "size": int, "shrink": str, "device": str,
            "versions": str, "first_seen": str, "last_seen": str, "times_seen": int,
            "first_run": int, "last_run": int, "last_replay": str, "last_replay_status": str,
            "last_replay_kernel": str,
        },
        pk="fingerprint",
    )
    db.table("findings").create_index(["target", "status"])
    db.table("runs").create(
        {
            "id": int, "started": str, "finished": str, "argv": str, "profile": str,
            "seed": int, "targets": str, "examples": int, "findings": int, "status": str,
            "versions": str, "results": str,
        },
        pk="id",
    )
    db.table("replays").create(
        {
            "id": int, "fingerprint": str, "at": str, "status": str, "kernel": str,
            "oracle": str, "mismatch_ratio": float, "metrics": str, "error": str,
        },
        pk="id",
        foreign_keys=[("fingerprint", "findings", "fingerprint")],
    )
    db.table("replays").create_index(["fingerprint"])


def json_safe(value: Any) -> Any:
    """`value` for json.dumps: binary data (never decoded) becomes a short description."""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes of binary data>"
    return value


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def versions(device: str = "cpu") -> dict[str, str]:
    """Versions of the software a finding was made with."""
    import torch
    from kfuzz import __version__

    name = "cpu"
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    found = {
        "kfuzz": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "device": name, "machine": platform.machine(),
    }
    # Triton's numerics (its CPU interpreter's casts above all) change between releases;
    # recorded only when a kernel has imported it, so that this never imports it.
    triton = sys.modules.get("triton")
    if triton is not None:
        found["triton"] = str(getattr(triton, "__version__", "?"))
    return found


def _dumps(obj: Any) -> str | None:
    return None if obj is None else json.dumps(obj, sort_keys=True, allow_nan=False)


def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """A findings row with its JSON columns parsed. A malformed JSON column raises
    CorpusError naming the row and the column."""
    out = dict(row)
    for column in JSON_COLUMNS:
        value = out.get(column)
        if isinstance(value, bytes):
            # Never unpickled or otherwise interpreted: a blob where JSON belongs is refused.
            raise CorpusError(
                f"finding {str(out.get('fingerprint'))[:12]}: column {column!r} holds "
                f"{len(value)} bytes of binary data, not JSON; delete that row"
            )
        if isinstance(value, str):
            try:
                out[column] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise CorpusError(
                    f"finding {str(out.get('fingerprint'))[:12]}: column {column!r} holds "
                    f"malformed JSON ({exc.msg}); fix or delete that row"
                ) from None
    return out


class CorpusStore:
    """A corpus database. Opening it applies pending migrations; raises CorpusError when
    the file is not a SQLite database, or was written by a newer kfuzz."""

    def __init__(self, path: str | Path = DEFAULT_DB) -> None:
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise CorpusError(f"corpus {str(self.path)!r} is a directory; pass a file to --db")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA busy_timeout = 60000")
            # Under WAL, NORMAL keeps every committed transaction through a process crash or
            # SIGKILL (only a power loss can drop the last ones) and halves the cost of the
            # one-transaction-per-finding writes of a run.
            self.db.execute("PRAGMA synchronous = NORMAL")
            self._check_schema()
            if self.db.journal_mode != "wal":
                self.db.enable_wal()
            migrations.apply(self.db)
        except sqlite3.DatabaseError as exc:
            raise CorpusError(
                f"corpus {str(self.path)!r} is not a usable SQLite database ({exc}); "
                "restore it from a backup or pass another --db"
            ) from None

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
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- runs ------------------------------------------------------------------------------

    def start_run(self, *, argv: list[str], profile: str, seed: int | None,
                  targets: list[str], device: str = "cpu") -> int:
        """Record a run's start; returns its id."""
        with self._transaction():
            table = self.db["runs"]
            table.insert({  # type: ignore[union-attr]
                "started": now(), "argv": _dumps(argv), "profile": profile, "seed": seed,
                "targets": _dumps(targets), "status": "running", "examples": 0, "findings": 0,
                "versions": _dumps(versions(device)),
            })
            return int(table.last_pk)  # type: ignore[union-attr, arg-type]

    def finish_run(self, run_id: int, *, status: str, examples: int, findings: int,
                   results: list[dict[str, Any]]) -> None:
        """Record a run's end."""
        with self._transaction():
            self.db["runs"].update(run_id, {  # type: ignore[union-attr]
                "finished": now(), "status": status, "examples": examples,
                "findings": findings, "results": _dumps(results),
            })

    # -- findings --------------------------------------------------------------------------

    def record_findings(self, findings: Iterable[Finding], *, run_id: int | None = None) -> list[str]:
        """Upsert findings by fingerprint in one transaction; returns their fingerprints.
        A rediscovered finding gets times_seen + 1, new metrics and status "open"; a shrunk
        finding deletes the raw row it replaces when nothing else has seen that row."""
        stamp = now()
        done = []
        with self._transaction():
            for finding in findings:
                done.append(self._upsert(finding, run_id, stamp))
        return done

    def record_finding(self, finding: Finding, *, run_id: int | None = None) -> str:
        """`record_findings` for one finding."""
        return self.record_findings([finding], run_id=run_id)[0]

    def _upsert(self, finding: Finding, run_id: int | None, stamp: str) -> str:
        key = finding.fingerprint
        table = self.db.table("findings")
        row = {
            "target": finding.target, "kernel": finding.kernel, "oracle": finding.oracle,
            "failure": finding.failure, "status": "open",
            "metrics": _dumps(finding.outcome.to_dict()["outputs"]), "error": finding.outcome.error,
            "mismatch_ratio": finding.outcome.worst_ratio(), "device": finding.device,
            "versions": _dumps(versions(finding.device)), "last_seen": stamp, "last_run": run_id,
        }
        existing = list(self.db.query("select kind, times_seen from findings where "
                                      "fingerprint = ?", [key]))
        if existing:
            old_kind = existing[0]["kind"]
            kind = max(old_kind, finding.kind, key=lambda k: KIND_RANK.get(k, -1))
            # A shrunk case that shrank to its own raw case is one sighting, not two.
            again = 0 if finding.replaces == key else 1
            row.update(kind=kind, times_seen=existing[0]["times_seen"] + again)
            if finding.shrink:
                row["shrink"] = _dumps(finding.shrink)
            table.update(key, row)
        else:
            from kfuzz import targets as registry

            try:
                size = registry.get(finding.target).case_size(finding.case)
            except Exception:
                size = None
            row.update(
                fingerprint=key, kind=finding.kind, case=_dumps(finding.case),
                comparator=_dumps(finding.comparator), shrink=_dumps(finding.shrink or None),
                size=size, first_seen=stamp, first_run=run_id, times_seen=1,
            )
            table.insert(row)
        if finding.replaces and finding.replaces != key:
            self.db.execute(
                "delete from findings where fingerprint = ? and kind = 'raw' and times_seen = 1",
                [finding.replaces],
            )
        return key

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

    def get(self, fingerprint: str) -> dict[str, Any]:
        """One finding, JSON columns decoded. Raises CorpusError when absent or malformed."""
        rows = list(self.db.query("select * from findings where fingerprint = ?", [fingerprint]))
        if not rows:
            raise CorpusError(f"no finding {fingerprint[:12]!r} in {str(self.path)!r}")
        return decode_row(rows[0])

    def findings(self, *, target: str | None = None, status: str | None = None,
                 limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Raw finding rows (JSON columns as text), newest first, optionally filtered."""
        where, args = [], []
        if target:
            where.append("target = ?")
            args.append(target)
        if status:
            where.append("status = ?")
            args.append(status)
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

    def record_replay(self, fingerprint: str, *, status: str, kernel: str, oracle: str,
                      outcome: dict[str, Any] | None, error: str | None) -> None:
        """Record one replay and update the finding's status: "fail" -> open, "pass" ->
        fixed, "error" leaves the status as it was."""
        stamp = now()
        ratio = None
        if outcome and outcome.get("outputs"):
            ratio = max(m["mismatch_ratio"] for m in outcome["outputs"].values())
        with self._transaction():
            self.db["replays"].insert({  # type: ignore[union-attr]
                "fingerprint": fingerprint, "at": stamp, "status": status, "kernel": kernel,
                "oracle": oracle, "mismatch_ratio": ratio,
                "metrics": _dumps(outcome.get("outputs") if outcome else None), "error": error,
            })
            update = {"last_replay": stamp, "last_replay_status": status,
                      "last_replay_kernel": kernel}
            if status in ("fail", "pass"):
                update["status"] = "open" if status == "fail" else "fixed"
            self.db.table("findings").update(fingerprint, update)

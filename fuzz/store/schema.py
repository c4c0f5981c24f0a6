"""The corpus schema: one versioned migration set (`sqlite_utils.Migrations`), one function per
change, applied in a transaction when a corpus is opened for writing."""

from __future__ import annotations

import re

import sqlite_utils
from sqlite_utils.migrations import Migrations

TABLES = ("findings", "runs", "replays")

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


# What classified an error, crash, contract breach or timeout, before it travelled as data:
# read once from the stored text of rows written by an older kfuzz.
_LEGACY_ERROR = {
    "error": re.compile(r"^(?P<error_type>[A-Za-z_][\w.]*):"),
    "contract": re.compile(r"^Contract: (?P<error_type>[\w-]+):"),
    "crash": re.compile(r"^Crash: worker (?:killed by (?:signal )?(?P<signal>\w+)|"
                        r"exited with status (?P<exit_code>-?\d+));"),
    "timeout": re.compile(r"^Timeout: no result after (?P<timeout>[0-9.e+-]+)s"),
}


@migrations()
def m002_error_fields(db: sqlite_utils.Database) -> None:
    """Findings keep the error type, crash signal or exit status, and timeout as columns."""
    table = db.table("findings")
    table.add_column("error_type", str)
    table.add_column("signal", str)
    table.add_column("exit_code", int)
    table.add_column("timeout", float)
    rows = db.query("select fingerprint, failure, error from findings "
                    "where failure in ('error', 'contract', 'crash', 'timeout')")
    for row in list(rows):
        found = _LEGACY_ERROR[row["failure"]].match(row["error"] or "")
        if found:
            values = {k: v for k, v in found.groupdict().items() if v is not None}
            if "exit_code" in values:
                values["exit_code"] = int(values["exit_code"])
            if "timeout" in values:
                values["timeout"] = float(values["timeout"])
            table.update(row["fingerprint"], values)


@migrations()
def m003_merge_ledger(db: sqlite_utils.Database) -> None:
    """The tables of `kfuzz.store.merge`, in every corpus; they were a migration set of their own
    ("kfuzz-merge"), applied only to corpora merged into, whose rows they keep."""
    if not db.table("merge_meta").exists():
        db.table("merge_meta").create({"key": str, "value": str}, pk="key")
    if not db.table("merge_sightings").exists():
        db.table("merge_sightings").create(
            {"fingerprint": str, "origin": str, "times_seen": int}, pk=("fingerprint", "origin")
        )
    if db.table(Migrations.migrations_table).exists():
        db.execute(f"delete from {Migrations.migrations_table} where migration_set = 'kfuzz-merge'")


def fill_substitute(db: sqlite_utils.Database) -> None:
    """Mark the replays whose substitute flag is unset: 1 when the replay ran another kernel
    or oracle than its finding's, else 0."""
    db.execute(
        "update replays set substitute = coalesce((select replays.kernel is not f.kernel or "
        "replays.oracle is not f.oracle from findings f where f.fingerprint = "
        "replays.fingerprint), 0) where substitute is null"
    )


@migrations()
def m004_portable_findings(db: sqlite_utils.Database) -> None:
    """Findings and runs record the plugins they were made with; a replay records whether it
    used its finding's own kernel and oracle (a substitute replay leaves the finding alone)."""
    db.table("findings").add_column("plugins", str)
    db.table("runs").add_column("plugins", str)
    db.table("replays").add_column("substitute", int)
    fill_substitute(db)


@migrations()
def m005_signature(db: sqlite_utils.Database) -> None:
    """Findings keep their failure signature (`kfuzz.execute.findings.signature`): a new shrunk
    finding with the signature of an open shrunk one updates it instead of adding a row.
    Rows stored before have none (NULL) and are matched by fingerprint only, as they were."""
    table = db.table("findings")
    if "signature" not in {c.name for c in table.columns}:
        table.add_column("signature", str)
    table.create_index(["target", "kernel", "oracle", "signature"], if_not_exists=True)


@migrations()
def m006_attribution(db: sqlite_utils.Database) -> None:
    """Findings of a chain keep their attribution to its stages (`kfuzz.chains.attribution`):
    JSON, NULL for other targets and for rows stored before."""
    table = db.table("findings")
    if "attribution" not in {c.name for c in table.columns}:
        table.add_column("attribution", str)

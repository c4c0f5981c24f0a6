"""Opening a corpus file: whether this process may write it, a read-only connection that
writes nothing beside a corpus it cannot write, and the one-line error for a file SQLite cannot
open (a read-only file is never called corrupt)."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import tempfile
from pathlib import Path

from kfuzz.errors import CorpusError

# What a write command tells the user about a read-only corpus, unless it knows better (replay:
# --no-record).
READ_ONLY_FIX = "copy it somewhere writable and pass --db COPY"


def on_read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def read_only_reason(path: Path) -> str | None:
    """Why this process cannot write the corpus file `path` (which exists) and the -wal and
    -shm files SQLite keeps beside it, or None when it can. access(2) answers for this
    process's user (root writes a file whatever its mode) and knows a read-only mount."""
    folder = path.parent
    sidecars = [Path(f"{path}{suffix}") for suffix in ("-wal", "-shm")]
    if os.access(path, os.W_OK) and (os.access(folder, os.W_OK | os.X_OK) or all(
            os.access(p, os.W_OK) for p in sidecars)):
        return None
    if on_read_only_mount(path):
        return "on a read-only file system"
    if not os.access(path, os.W_OK):
        return "the file is not writable"
    return f"its folder {str(folder)!r} is not writable"


def open_error(path: Path, exc: sqlite3.DatabaseError, fix: str) -> CorpusError:
    """The one-line CorpusError for an exception SQLite raised while opening `path`: a file
    that cannot be read or written is never called corrupt."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        reason = read_only_reason(path) if path.exists() else None
        if reason is not None or name.startswith("SQLITE_READONLY"):
            return CorpusError(f"corpus {str(path)!r} is read-only ({reason or exc}); {fix}")
        return CorpusError(f"corpus {str(path)!r} cannot be opened ({exc}); check the "
                           "permissions of the file, its -wal and -shm files and its folder")
    return CorpusError(
        f"corpus {str(path)!r} is not a usable SQLite database ({exc}); "
        "restore it from a backup or pass another corpus file"
    )


def check_writable(path: Path, fix: str, *, default: Path) -> None:
    """Raise CorpusError, before anything is written, when this process cannot write the
    corpus: an existing one that is read-only (a corrupt one is reported as corrupt), or a
    new one whose folder is missing or read-only."""
    if path.exists():
        reason = read_only_reason(path)
        if reason is None:
            return
        try:  # a bad file is named as such first
            probe = connect_read_only(path)
            try:
                probe.execute("select count(*) from sqlite_master").fetchone()
            finally:
                probe.close()
        except sqlite3.DatabaseError as exc:
            raise open_error(path, exc, fix) from None
        raise CorpusError(f"corpus {str(path)!r} is read-only ({reason}); {fix}")
    folder = path.parent
    if path == default and not folder.exists():
        folder = folder.parent  # the default corpus/ folder is created with the corpus
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise CorpusError(
            f"cannot create corpus {str(path)!r}: folder {str(folder)!r} {what}; "
            f"create it first (mkdir -p {shlex.quote(str(folder))}) or pass --db PATH in "
            "an existing folder"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        what = ("is on a read-only file system" if on_read_only_mount(folder)
                else "is not writable")
        raise CorpusError(
            f"cannot create corpus {str(path)!r}: folder {str(folder)!r} {what}; "
            "pass --db PATH in a writable folder"
        )

def connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection. A corpus this process may write is read through SQLite's
    locks, since a writer may be at work (for a WAL corpus SQLite keeps its -wal and -shm
    files beside it, creating them if absent). One it cannot write (a read-only file,
    folder or file system) is read as it is (`immutable`: no lock, no file created), or,
    when its -wal file holds transactions not yet in the main file, through that -wal
    file and its -shm index, or else through a private copy of both in memory."""
    uri = path.resolve().as_uri()

    def connect(query: str) -> sqlite3.Connection:
        return sqlite3.connect(f"{uri}?{query}", uri=True, timeout=60, isolation_level=None)

    if read_only_reason(path) is None:
        return connect("mode=ro")
    wal = Path(f"{path}-wal")
    if not (wal.is_file() and wal.stat().st_size > 0):
        return connect("mode=ro&immutable=1")
    conn = connect("mode=ro")
    try:
        conn.execute("select count(*) from sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:  # no -shm file, and none can be created
        conn.close()
    memory = sqlite3.connect(":memory:", isolation_level=None)
    with tempfile.TemporaryDirectory(prefix="kfuzz-corpus-") as tmp:
        copy = Path(tmp) / "corpus.db"
        shutil.copyfile(path, copy)
        shutil.copyfile(wal, f"{copy}-wal")
        source = sqlite3.connect(copy, isolation_level=None)  # recovers the -wal file
        try:
            source.backup(memory)
        finally:
            source.close()
    return memory

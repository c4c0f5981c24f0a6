"""Read-only corpora and relocated plugins, run the way a user runs them: the kfuzz command (or
pytest, or an exported script) in a subprocess, in a directory other than the corpus's.

A read-only corpus is made two ways:
- "chmod": the file 0444 in a folder 0555. Under root, whom file modes do not stop, the
  commands run without the capabilities that let root ignore them (`setpriv --bounding-set
  -dac_override,...`), so the modes hold as they do for any user;
- "rofs": the corpus's folder bind-mounted read-only in a private mount namespace (`unshare -m`,
  or `unshare -rm` for a user that is not root), a read-only file system.
Each way is checked before use (the files must really be unwritable to the command) and the
test is skipped, with the reason, where this machine cannot make it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
from kfuzz.errors import PluginError
from kfuzz.targets.registry import stand_in

BUILD = ["--kernel", "eager_lowp", "--compare", "exact", "--max-examples", "30",
         "--shrink-seconds", "1", "--seed", "1"]
NO_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner,-linux_immutable"]
# Runs "$@" with the folder $0 mounted read-only (in a mount namespace of its own).
RO_MOUNT = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
PLUGIN_FILE = """from dataclasses import replace

from kfuzz.targets import registry as targets

targets.register(replace(targets.get("ops.softmax"), name="moved.softmax"))
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def kfuzz_at(cwd: Path, *argv: object, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """The kfuzz command as a user runs it, in `cwd`, after `prefix` (a wrapper command)."""
    return subprocess.run([*prefix, sys.executable, "-m", "kfuzz.cli", *map(str, argv)], cwd=cwd,
                          env=_env(), capture_output=True, text=True, timeout=300)


def pytest_at(cwd: Path, *argv: object, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """pytest with kfuzz's plugin, in `cwd`."""
    return subprocess.run([*prefix, sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           *map(str, argv)], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=300)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _summary(res: subprocess.CompletedProcess[str]) -> str:
    """pytest -q's last line: "2 failed in 3.1s", "1 error in ..."."""
    return res.stdout.strip().splitlines()[-1]


def _one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith("kfuzz: error: ") and res.stderr.count("\n") == 1, res.stderr
    return res.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A small corpus made by `kfuzz run` (WAL mode, findings that still fail) and its ids."""
    folder = tmp_path_factory.mktemp("built")
    db = folder / "corpus.db"
    run = kfuzz_at(folder, "run", "ops.softmax", *BUILD, "--db", db)
    assert run.returncode == 1, run.stdout + run.stderr
    listed = kfuzz_at(folder, "corpus", "list", "--json", "--db", db)
    ids = [f["fingerprint"][:12] for f in json.loads(listed.stdout)["findings"]]
    assert ids
    for suffix in ("-wal", "-shm"):  # a corpus as copied or committed: the file alone
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return db, ids


class ReadOnly:
    """A corpus folder made read-only one way (see the module docstring): `prefix` is the
    wrapper every command runs under."""

    def __init__(self, how: str, folder: Path) -> None:
        self.how, self.folder = how, folder
        self.db = folder / "corpus.db"
        self.prefix: list[str] = []

    def lock(self) -> None:
        if self.how == "chmod":
            os.chmod(self.db, 0o444)
            for extra in self.folder.iterdir():
                os.chmod(extra, 0o444)
            os.chmod(self.folder, 0o555)
            if os.geteuid() == 0:
                if shutil.which("setpriv") is None:
                    pytest.skip("running as root, and no setpriv to drop the capability to "
                                "write read-only files")
                self.prefix = NO_DAC
        else:
            if shutil.which("unshare") is None:
                pytest.skip("no unshare to mount the corpus folder read-only")
            self.prefix = (["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]) + [
                "sh", "-c", RO_MOUNT, str(self.folder)]
        probe = subprocess.run([*self.prefix, "sh", "-c", 'test ! -w "$0" && test ! -w "$1"',
                                str(self.db), str(self.folder)], capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.skip(f"cannot make {self.how} read-only here: {probe.stderr.strip()[:200]}")

    def unlock(self) -> None:
        if self.folder.exists():
            os.chmod(self.folder, 0o755)
            for path in self.folder.iterdir():
                os.chmod(path, 0o644)

    def kfuzz(self, cwd: Path, *argv: object) -> subprocess.CompletedProcess[str]:
        return kfuzz_at(cwd, *argv, prefix=self.prefix)

    def pytest(self, cwd: Path, *argv: object) -> subprocess.CompletedProcess[str]:
        return pytest_at(cwd, *argv, prefix=self.prefix)


@pytest.fixture(params=["chmod", "rofs"])
def read_only(request: pytest.FixtureRequest, tmp_path: Path,
              built: tuple[Path, list[str]]) -> ReadOnly:
    """A copy of the built corpus in a read-only folder; `tmp_path / "work"` is a writable
    directory to run commands in."""
    folder = tmp_path / "ro"
    folder.mkdir()
    shutil.copyfile(built[0], folder / "corpus.db")
    (tmp_path / "work").mkdir()
    ro = ReadOnly(request.param, folder)
    request.addfinalizer(ro.unlock)
    return ro


# --- read-only corpora --------------------------------------------------------------------------


@pytest.mark.slow
def test_read_commands_work_on_a_read_only_corpus_and_write_nothing(read_only, built, tmp_path):
    ro, work, ids = read_only, tmp_path / "work", built[1]
    ro.lock()
    before = _snapshot(ro.folder)

    listed = ro.kfuzz(work, "corpus", "list", "--json", "--db", ro.db)
    assert listed.returncode == 0, listed.stderr
    assert sorted(f["fingerprint"][:12] for f in json.loads(listed.stdout)["findings"]) == sorted(ids)
    shown = ro.kfuzz(work, "corpus", "show", ids[0], "--db", ro.db)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("fingerprint") and ids[0] in shown.stdout.splitlines()[0]
    script = work / "repro.py"
    exported = ro.kfuzz(work, "corpus", "export", ids[0], "--db", ro.db, "-o", script)
    assert exported.returncode == 0, exported.stderr
    assert "TARGET = \"ops.softmax\"" in script.read_text()

    replayed = ro.kfuzz(work, "replay", "--no-record", "--json", "--db", ro.db)
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr  # they still fail
    assert {r["verdict"] for r in json.loads(replayed.stdout)["replays"]} == {"still failing"}
    table = ro.kfuzz(work, "replay", "--no-record", "--id", ids[0], "--db", ro.db)
    assert table.returncode == 1, table.stderr
    assert "nothing recorded (--no-record): the corpus is unchanged" in table.stdout

    report = ro.kfuzz(work, "report", "--db", ro.db, "--out", work / "report", "--max-plots", "1")
    assert report.returncode == 0, report.stderr
    assert "Not replayed for this report" not in (work / "report" / "summary.md").read_text()

    tests = ro.pytest(work, "--kfuzz-db", ro.db, "--kfuzz-no-record", "-q")
    assert tests.returncode == 1, tests.stdout + tests.stderr
    assert _summary(tests).startswith(f"{len(ids)} failed in ")  # failures, no error

    for res in (listed, shown, exported, replayed, table, report, tests):
        assert "not a usable SQLite database" not in res.stdout + res.stderr
    assert _snapshot(ro.folder) == before  # no -wal, no -shm, not a byte changed


@pytest.mark.parametrize("shm", ["with -shm", "without -shm"])
def test_transactions_left_in_the_wal_file_are_read(read_only, tmp_path, shm):
    """A corpus copied or left (a killed writer) with committed transactions only in its -wal
    file: a read-only open must see them, whether or not the -shm index is there."""
    ro, work = read_only, tmp_path / "work"
    writer = textwrap.dedent(f"""
        import os, sqlite3
        conn = sqlite3.connect({str(ro.db)!r}, isolation_level=None)
        conn.execute("pragma wal_autocheckpoint = 0")
        conn.execute("update findings set status = 'fixed'")
        os._exit(0)  # no checkpoint: the update lives in the -wal file only
    """)
    subprocess.run([sys.executable, "-c", writer], check=True, timeout=60)
    assert Path(f"{ro.db}-wal").stat().st_size > 0
    if shm == "without -shm":
        Path(f"{ro.db}-shm").unlink()
    ro.lock()
    before = _snapshot(ro.folder)
    listed = ro.kfuzz(work, "corpus", "list", "--json", "--db", ro.db)
    assert listed.returncode == 0, listed.stderr
    assert {f["status"] for f in json.loads(listed.stdout)["findings"]} == {"fixed"}
    assert _snapshot(ro.folder) == before


@pytest.mark.slow
def test_write_commands_on_a_read_only_corpus_are_refused_and_change_nothing(read_only, built,
                                                                              tmp_path):
    ro, work, ids = read_only, tmp_path / "work", built[1]
    other = work / "other.db"
    shutil.copyfile(built[0], other)
    ro.lock()
    before = _snapshot(ro.folder)
    db = repr(str(ro.db))
    reason = "(the file is not writable)" if ro.how == "chmod" else "(on a read-only file system)"

    err = _one_line_error(ro.kfuzz(work, "replay", "--db", ro.db))
    assert err == (f"kfuzz: error: corpus {db} is read-only {reason}; pass --no-record to replay "
                   "without recording, or copy it somewhere writable and pass --db COPY\n")
    err = _one_line_error(ro.kfuzz(work, "corpus", "rm", ids[0], "--db", ro.db))
    assert err == (f"kfuzz: error: corpus {db} is read-only {reason}; copy it somewhere "
                   "writable and pass --db COPY\n")
    err = _one_line_error(ro.kfuzz(work, "corpus", "merge", other, "--into", ro.db))
    assert err == (f"kfuzz: error: corpus {db} is read-only {reason}; copy it somewhere "
                   "writable and pass --into COPY\n")
    err = _one_line_error(ro.kfuzz(work, "run", "ops.softmax", "--max-examples", "2", "--db",
                                   ro.db))
    assert err.startswith(f"kfuzz: error: corpus {db} is read-only {reason}; copy it")
    # A new corpus in the read-only folder: refused, nothing created.
    err = _one_line_error(ro.kfuzz(work, "run", "ops.softmax", "--max-examples", "2", "--db",
                                   ro.folder / "new.db"))
    what = "is not writable" if ro.how == "chmod" else "is on a read-only file system"
    assert err == (f"kfuzz: error: cannot create corpus {str(ro.folder / 'new.db')!r}: folder "
                   f"{str(ro.folder)!r} {what}; pass --db PATH in a writable folder\n")

    tests = ro.pytest(work, "--kfuzz-db", ro.db, "-q")  # recording replays: refused
    assert tests.returncode == 1, tests.stdout + tests.stderr
    assert f"kfuzz: corpus {db} is read-only {reason}; pass --kfuzz-no-record" in tests.stdout
    assert _snapshot(ro.folder) == before


def test_a_corrupt_read_only_file_is_still_called_corrupt(read_only, tmp_path):
    ro, work = read_only, tmp_path / "work"
    ro.db.write_bytes(b"not a database, and never was " * 200)
    ro.lock()
    for argv in (["corpus", "list"], ["replay", "--no-record"], ["replay"], ["corpus", "rm", "ab"]):
        err = _one_line_error(ro.kfuzz(work, *argv, "--db", ro.db))
        assert err.startswith(f"kfuzz: error: corpus {str(ro.db)!r} is not a usable SQLite "
                              "database (file is not a database)"), argv
    assert ro.db.read_bytes() == b"not a database, and never was " * 200


def test_a_run_into_a_missing_folder_is_an_error_that_writes_nothing(tmp_path):
    err = _one_line_error(kfuzz_at(tmp_path, "run", "ops.softmax", "--max-examples", "2", "--db",
                                   "results/nightly/corpus.db"))
    assert err == ("kfuzz: error: cannot create corpus 'results/nightly/corpus.db': folder "
                   "'results/nightly' does not exist; create it first (mkdir -p results/nightly) "
                   "or pass --db PATH in an existing folder\n")
    # Refused at set-up for another reason: no corpus is created either.
    err = _one_line_error(kfuzz_at(tmp_path, "run", "ops.sotfmax", "--db", "c.db"))
    assert "no target 'ops.sotfmax'" in err
    assert list(tmp_path.iterdir()) == []


# --- relocated plugins --------------------------------------------------------------------------


def test_stand_in_matches_by_file_name_or_module_name():
    assert stand_in("/ci/repo/plugins/mine.py", ["/home/me/repo/plugins/mine.py"]) == (
        "/home/me/repo/plugins/mine.py")
    assert stand_in("/ci/repo/plugins/mine.py", ["/home/me/theirs.py"]) == "/ci/repo/plugins/mine.py"
    assert stand_in("mypkg.mine", ["/home/me/mine.py"]) == "/home/me/mine.py"
    assert stand_in("/ci/mine.py", ["os.path"]) == "/ci/mine.py"  # another name
    assert stand_in("mypkg.mine", ["otherpkg.mine"]) == "mypkg.mine"  # modules: equal names only
    with pytest.raises(PluginError, match="both stand in for the recorded plugin '/ci/mine.py'"):
        stand_in("/ci/mine.py", ["/a/mine.py", "/b/mine.py"])


@pytest.fixture
def moved(tmp_path: Path) -> dict[str, object]:
    """A finding of a plugin target, made with the plugin in a/, which then moved to b/; the
    corpus and a third directory to work in."""
    dirs = {name: tmp_path / name for name in ("a", "b", "work")}
    for path in dirs.values():
        path.mkdir()
    (dirs["a"] / "myplugin.py").write_text(PLUGIN_FILE)
    db = tmp_path / "corpus.db"
    run = kfuzz_at(dirs["a"], "run", "moved.softmax", "--plugin", "myplugin.py", *BUILD,
                   "--db", db, "--json")
    assert run.returncode == 1, run.stdout + run.stderr
    shutil.move(dirs["a"] / "myplugin.py", dirs["b"] / "myplugin.py")
    ids = [f["fingerprint"][:12] for f in json.loads(run.stdout)["findings"]]
    old = str((dirs["a"] / "myplugin.py").resolve())
    return {**dirs, "db": db, "ids": ids, "old": old, "new": dirs["b"] / "myplugin.py"}


@pytest.mark.slow
def test_a_moved_plugin_stands_in_for_the_recorded_one(moved, tmp_path):
    work, db, old, new = moved["work"], moved["db"], moved["old"], moved["new"]
    some = moved["ids"][0]
    fix = (f"plugin file {old!r} recorded with the finding does not exist; pass --plugin "
           "NEW/PATH/myplugin.py (pytest: --kfuzz-plugin) to load it from where it is now")

    lost = kfuzz_at(work, "replay", "--id", some, "--db", db)
    assert lost.returncode == 3, lost.stdout + lost.stderr
    assert f"kfuzz: finding {some} could not be replayed: {fix}\n" in lost.stderr
    found = kfuzz_at(work, "replay", "--id", some, "--db", db, "--plugin", new, "--json")
    assert found.returncode == 1, found.stdout + found.stderr  # replays, and still fails
    assert [r["verdict"] for r in json.loads(found.stdout)["replays"]] == ["still failing"]
    isolated = kfuzz_at(work, "replay", "--db", db, "--plugin", new, "--isolate", "--no-record")
    assert isolated.returncode == 1, isolated.stdout + isolated.stderr
    assert " 0 error" in isolated.stdout

    script = work / "repro.py"
    assert kfuzz_at(work, "corpus", "export", some, "--db", db, "-o", script).returncode == 0
    alone = subprocess.run([sys.executable, script], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert alone.returncode == 2 and alone.stderr == f"kfuzz: error: {fix}\n"
    told = subprocess.run([sys.executable, script, "--plugin", new], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert told.returncode == 1 and "FAIL" in told.stdout, told.stdout + told.stderr
    baked = work / "baked.py"
    assert kfuzz_at(work, "corpus", "export", some, "--db", db, "-o", baked, "--plugin",
                    new).returncode == 0
    assert str(new.resolve()) in baked.read_text() and old not in baked.read_text()
    ran = subprocess.run([sys.executable, baked], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert ran.returncode == 1 and "FAIL" in ran.stdout, ran.stdout + ran.stderr

    report = kfuzz_at(work, "report", "--db", db, "--out", work / "r1", "--max-plots", "1")
    assert report.returncode == 0, report.stderr
    assert f"Not replayed for this report: {fix}" in (work / "r1" / "summary.md").read_text()
    report = kfuzz_at(work, "report", "--db", db, "--out", work / "r2", "--max-plots", "1",
                      "--plugin", new)
    assert report.returncode == 0, report.stderr
    assert "Not replayed for this report" not in (work / "r2" / "summary.md").read_text()


def test_pytest_reports_a_finding_with_a_lost_plugin_as_an_error(moved):
    work, db, new, n = moved["work"], moved["db"], moved["new"], len(moved["ids"])
    lost = pytest_at(work, "--kfuzz-db", db, "--kfuzz-no-record", "-q")
    assert lost.returncode == 1, lost.stdout + lost.stderr
    assert _summary(lost).startswith(f"{n} errors in " if n > 1 else "1 error in ")
    assert f"plugin file {moved['old']!r} recorded with the finding does not exist" in lost.stdout
    found = pytest_at(work, "--kfuzz-db", db, "--kfuzz-no-record", "--kfuzz-plugin", new, "-q")
    assert found.returncode == 1, found.stdout + found.stderr
    assert _summary(found).startswith(f"{n} failed in ")

"""The pytest plugin: `pytest --kfuzz-db PATH` replays each stored finding as one test."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "tests" / "data" / "corpus.db"
OPEN_ID = "ops.rmsnorm[eager_lowp-fp64-1ad4a3f466f9]"
FIXED_ID = "ops.rmsnorm[tests.data.corpus_kernels:rmsnorm-fp64-30d9a8be4ea3]"


def _pytest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The committed corpus names a kernel in tests.data, importable from the project root.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture
def corpus_copy(tmp_path: Path) -> Path:
    # Replays are recorded in the corpus: never write to the committed file.
    path = tmp_path / "corpus.db"
    shutil.copyfile(COMMITTED, path)
    return path


def test_committed_corpus_holds_one_open_and_one_fixed_finding():
    conn = sqlite3.connect(f"{COMMITTED.as_uri()}?mode=ro", uri=True)
    rows = dict(conn.execute("select substr(fingerprint, 1, 12), status from findings"))
    conn.close()
    assert rows == {"1ad4a3f466f9": "open", "30d9a8be4ea3": "fixed"}


def test_open_finding_fails_and_fixed_finding_passes(corpus_copy, tmp_path):
    junit = tmp_path / "pytest.xml"
    proc = _pytest(tmp_path, "--kfuzz-db", str(corpus_copy), "-v", f"--junitxml={junit}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout
    assert f"corpus.db::{OPEN_ID} FAILED" in proc.stdout
    assert f"corpus.db::{FIXED_ID} PASSED" in proc.stdout
    # The failure is kfuzz's message, not a traceback into the plugin.
    assert "finding 1ad4a3f466f9 still fails: ops.rmsnorm kernel eager_lowp vs fp64" in proc.stdout
    assert "Mismatched elements: 104 / 256" in proc.stdout
    assert "Traceback" not in proc.stdout
    cases = {c.get("name"): c for c in ET.parse(junit).iter("testcase")}
    assert set(cases) == {OPEN_ID, FIXED_ID}
    assert cases[OPEN_ID].find("failure") is not None
    assert cases[FIXED_ID].find("failure") is None
    # Each replay is recorded, as `kfuzz replay` records it.
    conn = sqlite3.connect(corpus_copy)
    assert conn.execute("select count(*) from replays").fetchone()[0] == 4
    conn.close()


def test_no_record_replays_a_committed_corpus_without_writing_it(tmp_path):
    before = COMMITTED.read_bytes()
    proc = _pytest(tmp_path, "--kfuzz-db", str(COMMITTED), "--kfuzz-no-record", "-q")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout
    assert COMMITTED.read_bytes() == before
    assert sorted(p.name for p in COMMITTED.parent.glob("corpus.db*")) == ["corpus.db"]


def test_collect_only_lists_readable_ids_and_k_selects(corpus_copy, tmp_path):
    listed = _pytest(tmp_path, "--kfuzz-db", str(corpus_copy), "--collect-only", "-q")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert f"corpus.db::{OPEN_ID}" in listed.stdout
    assert f"corpus.db::{FIXED_ID}" in listed.stdout
    chosen = _pytest(tmp_path, "--kfuzz-db", str(corpus_copy), "-q", "-k", "corpus_kernels")
    assert chosen.returncode == 0, chosen.stdout
    assert "1 passed, 1 deselected" in chosen.stdout


def test_replay_with_another_kernel_fixes_the_open_finding(corpus_copy, tmp_path):
    proc = _pytest(tmp_path, "--kfuzz-db", str(corpus_copy), "--kfuzz-kernel", "eager_fp32",
                   "-q", "--kfuzz-target", "ops.rmsnorm")
    assert proc.returncode == 0, proc.stdout
    assert "2 passed" in proc.stdout


def test_without_kfuzz_db_the_plugin_adds_no_test(tmp_path):
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    (tmp_path / "corpus.db").write_bytes(COMMITTED.read_bytes())
    proc = _pytest(tmp_path, "-v")
    # The plugin is loaded, and without the option the .db beside the test is not collected.
    assert "plugins: kfuzz-" in proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout and "corpus.db" not in proc.stdout


def test_missing_corpus_is_a_usage_error(tmp_path):
    proc = _pytest(tmp_path, "--kfuzz-db", "nope.db")
    assert proc.returncode == 4
    assert "--kfuzz-db 'nope.db': no such file; pass a corpus written by `kfuzz run`" in proc.stderr


def test_corrupt_corpus_is_a_collection_error_with_one_line(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not sqlite" * 500)
    proc = _pytest(tmp_path, "--kfuzz-db", str(bad), "-q")
    assert proc.returncode == 2
    assert f"kfuzz: corpus '{bad}' is not a usable SQLite database" in proc.stdout

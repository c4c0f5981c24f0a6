"""Mistakes caught before fuzzing, and blamed correctly: `kfuzz run` as a user runs it, from a
directory other than the one holding their kernel file."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

KFUZZ = str(Path(sys.executable).parent / "kfuzz")


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A kernels directory and a separate working directory (the cwd)."""
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    def write(name: str, body: str) -> str:
        (kernels / name).write_text("import torch\n\n" + textwrap.dedent(body))
        return f"../kernels/{name}"

    return write


def _findings(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute("select count(*) from findings").fetchone()[0]
    finally:
        conn.close()


def _one_line_exit_2(res, start: str) -> None:
    assert res.code == 2, (res.out, res.err)
    assert res.err.startswith(start), res.err
    assert res.err.count("\n") == 1 and "Traceback" not in res.err, res.err


def test_a_kernel_whose_signature_does_not_fit_is_refused_before_anything_is_stored(kfuzz, user):
    ref = user("badsig.py", "def rms(x, w, eps):\n    return x\n")
    res = kfuzz("run", "ops.rmsnorm", "--kernel", f"{ref}:rms", "--max-examples", "20",
                "--db", "c.db")
    _one_line_exit_2(res, f"kfuzz: error: kernel '{ref}:rms' does not fit target 'ops.rmsnorm': "
                     "expected fn(x, weight, *, eps), got rms(x, w, eps) (")
    assert _findings(Path("c.db")) == 0


def test_a_type_error_inside_a_fitting_kernel_is_still_a_finding(kfuzz, user):
    ref = user("typeerr.py", "def rms(x, weight, *, eps):\n    return x + 'oops'\n")
    res = kfuzz("run", "ops.rmsnorm", "--kernel", f"{ref}:rms", "--max-examples", "5",
                "--shrink-seconds", "1", "--db", "c.db", "--json")
    assert res.code == 1, res.err
    assert {f["failure"] for f in res.json()["findings"]} == {"error"}


def test_an_oracle_that_raises_is_blamed_on_the_oracle(kfuzz, user):
    ref = user("golden.py", """\
        def softmax(x):
            if x.shape[-1] > 3:
                raise ValueError("golden cannot do wide rows")
            return torch.softmax(x.double(), -1)
        """)
    res = kfuzz("run", "ops.softmax", "--oracle", f"{ref}:softmax", "--max-examples", "40",
                "--seed", "0", "--db", "c.db")
    _one_line_exit_2(res, f"kfuzz: error: oracle '{ref}:softmax' of target 'ops.softmax' raised "
                     "ValueError: golden cannot do wide rows on case {")
    assert "an oracle must judge every case" in res.err
    assert _findings(Path("c.db")) == 0


@pytest.mark.parametrize(
    "pin, message",
    [
        ("shape=[4,64", "--pin shape=[4,64: VALUE is not valid JSON ("),
        ("shap=[4,64]", "--pin shap: cases of 'ops.rmsnorm' have no field 'shap'; fields: "),
        ("shape=[4,64,512]", "--pin shape=[4, 64, 512]: 'ops.rmsnorm' draws 'shape' with 2 "
                             "entries, not 3"),
        ("shape=4", "--pin shape=4: 'ops.rmsnorm' draws a list for 'shape' (e.g. "),
        ("shape=[4,-1]", "--pin shape=[4, -1]: 'ops.rmsnorm' draws 'shape' as non-negative "
                         "integers"),
        ("dtype=float64", "--pin dtype=\"float64\": 'ops.rmsnorm' does not offer dtype "
                          "'float64'; it offers bfloat16, float16"),
        ("shape=[100000,100000]", "--pin shape=[100000, 100000]: 10000000000 elements, past "
                                  "max_numel 262144 of 'ops.rmsnorm' (raise it with --max-numel)"),
        ("x={\"kind\":\"nope\"}", "--pin x={\"kind\": \"nope\"}: 'ops.rmsnorm' cannot build a case "
                                  "from it (CaseError: "),
        ("shape", "--pin shape: expected FIELD=VALUE, e.g. --pin shape=[4,64,512]"),
    ],
    ids=["malformed-json", "unknown-field", "wrong-rank", "wrong-kind", "negative-size",
         "dtype-not-offered", "past-max-numel", "unbuildable", "no-equals"],
)
def test_pins_are_checked_against_the_target(kfuzz, tmp_path, pin, message):
    db = tmp_path / "c.db"
    res = kfuzz("run", "ops.rmsnorm", "--pin", pin, "--max-examples", "5", "--db", db)
    _one_line_exit_2(res, "kfuzz: error: " + message)
    assert not db.exists()  # refused before the corpus is touched


def test_a_pin_that_fits_is_accepted(kfuzz, tmp_path):
    res = kfuzz("run", "ops.rmsnorm", "--kernel", "eager_fp32", "--pin", "shape=[2,512]",
                "--pin", "dtype=float16", "--max-examples", "5", "--db", tmp_path / "c.db",
                "--json")
    assert res.code in (0, 1), res.err
    assert res.json()["campaigns"][0]["examples"] == 5


@pytest.mark.parametrize("device, message", [
    ("mps", "--device mps: kfuzz runs kernels on cpu or cuda (cuda:N), not 'mps'"),
    ("banana", "--device banana: kfuzz runs kernels on cpu or cuda (cuda:N), not 'banana'"),
    ("cpu:1", "--device cpu:1: kfuzz runs kernels on cpu or cuda (cuda:N), not 'cpu:1'"),
])
def test_unknown_devices_are_one_line_errors(kfuzz, tmp_path, device, message):
    for command in (["run", "ops.softmax"], ["replay"], ["report", "--out", str(tmp_path)]):
        res = kfuzz(*command, "--device", device, "--db", tmp_path / "c.db")
        _one_line_exit_2(res, "kfuzz: error: " + message)


def _run_without_triton(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    # A machine without the triton extra: the package cannot be found or imported.
    code = ("import sys; sys.modules['triton'] = None\n"
            "from kfuzz.cli.app import main\n"
            f"sys.exit(main({list(argv)!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.mark.slow
def test_run_all_skips_what_cannot_run_here_and_says_why(tmp_path):
    proc = _run_without_triton("run", "--all", "--max-examples", "2", "--shrink-seconds", "1",
                               "--seed", "0", "--db", "c.db", "--json", "--junit", "j.xml",
                               cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    skipped = {s["target"]: s["reason"] for s in doc["skipped"]}
    assert {t for t in skipped} == {"triton.rmsnorm", "triton.softmax", "triton.sparse_attn"}
    assert all("triton is not installed" in why for why in skipped.values()), skipped
    ran = {c["target"] for c in doc["campaigns"]}
    assert {"ops.rmsnorm", "ops.softmax", "dsv4.q_norm_rope"} <= ran and not ran & set(skipped)
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite.get("skipped") == "3"
    assert {c.get("name") for c in suite.iter("testcase") if c.find("skipped") is not None} == \
        set(skipped)
    conn = sqlite3.connect(tmp_path / "c.db")
    (results,) = conn.execute("select results from runs").fetchone()
    assert {r["target"] for r in json.loads(results) if "skipped" in r} == set(skipped)
    conn.close()

    text = _run_without_triton("run", "--all", "--max-examples", "2", "--shrink-seconds", "1",
                               "--seed", "0", "--db", "c.db", cwd=tmp_path)
    assert "skipped (ran no case):\n  triton.rmsnorm: " in text.stdout


def test_naming_a_target_that_cannot_run_here_stays_an_error(tmp_path):
    proc = _run_without_triton("run", "triton.rmsnorm", "--max-examples", "2", "--db", "c.db",
                               cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("kfuzz: error: triton.rmsnorm kernel 'rsqrt' cannot run on "
                                  "cpu: triton is not installed")


@pytest.mark.slow
def test_a_segfault_without_isolate_prints_where_and_a_hint(user, tmp_path):
    ref = user("segv.py", """\
        import ctypes

        def softmax(x):
            ctypes.string_at(0)
        """)
    proc = subprocess.run([KFUZZ, "run", "ops.softmax", "--kernel", f"{ref}:softmax",
                           "--max-examples", "3", "--db", "c.db"], capture_output=True,
                          text=True, cwd=tmp_path / "work", timeout=300)
    assert proc.returncode == -11  # SIGSEGV, as before: the hint does not hide the crash
    assert "Fatal Python error: Segmentation fault" in proc.stderr
    assert "segv.py" in proc.stderr  # the stack names the kernel's file
    assert proc.stderr.rstrip().endswith(
        "kfuzz: a kernel crashed the kfuzz process (Segmentation fault); rerun with --isolate "
        "so that a crash becomes a finding (stored and shrunk) and the run goes on")
    isolated = subprocess.run([KFUZZ, "run", "ops.softmax", "--kernel", f"{ref}:softmax",
                               "--max-examples", "3", "--shrink-seconds", "1", "--isolate",
                               "--db", "c.db", "--json"], capture_output=True, text=True,
                              cwd=tmp_path / "work", timeout=300)
    assert isolated.returncode == 1, isolated.stderr
    assert {f["failure"] for f in json.loads(isolated.stdout)["findings"]} == {"crash"}
    assert "--isolate" not in isolated.stderr


def test_a_clean_run_prints_no_hint(tmp_path):
    proc = subprocess.run([KFUZZ, "run", "ops.softmax", "--kernel", "eager_fp32",
                           "--max-examples", "3", "--db", "c.db"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""

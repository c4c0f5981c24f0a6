"""`kfuzz corpus export ID --standalone`: reproducers of ONNX Runtime and JAX findings that
need only NumPy and the library, run in a fresh interpreter that cannot import kfuzz or torch;
and the built-in ONNX Runtime kernels keep ORT's log off the terminal."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from kfuzz.store.corpus import CorpusStore

OVERFLOW = json.dumps({"kind": "edge", "edge": "overflow", "spread": 0})
# Runs the script as __main__ with kfuzz and torch made unimportable.
RUNNER = ("import runpy, sys; sys.modules['torch'] = None; sys.modules['kfuzz'] = None; "
          "sys.argv = [sys.argv[1]]; runpy.run_path(sys.argv[0], run_name='__main__')")


def _finding(kfuzz, db_path, kernel: str, dtype: str) -> str:
    # FP32 inputs near the overflow edge: x * x overflows in any FP32 RMSNorm, so the case
    # fails at once and deterministically (a quick finding to export, not a library defect).
    result = kfuzz("run", "ops.rmsnorm", "--kernel", kernel, "--pin", f"dtype={dtype}",
                   "--pin", "shape=[1,1]", "--pin", f"x={OVERFLOW}", "--max-examples", "3",
                   "--seed", "0", "--shrink-seconds", "2", "--db", db_path)
    assert result.code == 1, result.out + result.err
    return next(CorpusStore(db_path, read_only=True).findings())["fingerprint"]


def _run(script, tmp_path):
    return subprocess.run([sys.executable, "-I", "-c", RUNNER, str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kernel, dtype, library, name", [
    ("ort_rmsnorm", "float32", "onnxruntime", "X"),  # the op's inputs, by the op's names
    ("jax_rmsnorm_jit", "bfloat16", "jax", "x"),
])
def test_standalone_reproducer_needs_only_numpy_and_the_library(kfuzz, db_path, tmp_path,
                                                                kernel, dtype, library, name):
    pytest.importorskip(library)
    fingerprint = _finding(kfuzz, db_path, kernel, dtype)
    script = tmp_path / "repro.py"
    result = kfuzz("corpus", "export", fingerprint[:12], "--standalone", "--db", db_path,
                   "-o", script)
    assert result.code == 0, result.err
    text = script.read_text()
    assert "import kfuzz" not in text and "import torch" not in text
    ran = _run(script, tmp_path)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "FAIL" in ran.stdout and f"input {name}: {dtype} [1, 1]" in ran.stdout
    assert "actual 0.0" in ran.stdout  # x * x overflowed: the output is 0


def test_standalone_reproducer_exits_0_once_the_case_passes(kfuzz, db_path, tmp_path):
    pytest.importorskip("onnxruntime")
    from kfuzz.present.standalone import standalone

    fingerprint = _finding(kfuzz, db_path, "ort_rmsnorm", "float32")
    row = CorpusStore(db_path, read_only=True).get(fingerprint)
    row["case"] = {**row["case"], "x": {"kind": "normal", "scale": 1.0}, "shape": [2, 8]}
    script = tmp_path / "passing.py"
    script.write_text(standalone(row))
    ran = _run(script, tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.strip().endswith("PASS")


def test_standalone_refuses_a_torch_kernel(kfuzz, db_path):
    kfuzz("run", "ops.rmsnorm", "--kernel", "eager_lowp", "--pin", "dtype=float32",
          "--pin", "shape=[1,1]", "--pin", f"x={OVERFLOW}", "--max-examples", "3", "--seed", "0",
          "--shrink-seconds", "2", "--db", db_path)
    fingerprint = next(CorpusStore(db_path, read_only=True).findings())["fingerprint"]
    result = kfuzz("corpus", "export", fingerprint[:12], "--standalone", "--db", db_path)
    assert result.code == 2
    assert "is not one (export it without --standalone)" in result.err


def test_ort_log_is_captured_into_the_error_not_the_terminal(capfd):
    pytest.importorskip("onnxruntime")
    from kfuzz.kernels import onnxruntime as ort

    x = np.ones((2, 4), dtype=np.float32)
    with pytest.raises(Exception, match="Invalid rank for input: scale"):
        ort.run("RMSNormalization", {"axis": -1, "epsilon": 1e-5}, x, x)  # scale of rank 2
    assert capfd.readouterr().err == ""


def _row(target: str, kernel: str, case: dict) -> dict:
    return {"target": target, "kernel": kernel, "case": {**case, "materialise": 2},
            "fingerprint": "0" * 64, "oracle": None, "comparator": None}


ROPE_CASE = {"shape": [5, 3, 8], "dtype": "float32", "x": {"kind": "normal", "scale": 1.0},
             "max_position": 65536, "base": 10000.0, "seed": 3}


@pytest.mark.parametrize("kernel", ["ort_rope", "ort_rope_ms"])
def test_standalone_rope_feeds_the_caches_the_kernel_builds(tmp_path, kernel):
    # The op's inputs (X [1, heads, tokens, dim], float64-built caches, int64 position_ids)
    # written into the script reproduce the kernel: an FP32 case passes there as here.
    pytest.importorskip("onnxruntime")
    from kfuzz.present.standalone import standalone

    script = tmp_path / "rope.py"
    script.write_text(standalone(_row("ops.rope", kernel, ROPE_CASE)))
    ran = _run(script, tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "input X: float32 [1, 3, 5, 8]" in ran.stdout
    assert "input position_ids: int64 [1, 5]" in ran.stdout
    assert ran.stdout.strip().endswith("PASS")


def test_standalone_multihead_attention_on_packed_inputs(tmp_path):
    # Causal with fewer queries than keys: com.microsoft MultiHeadAttention's last query row
    # attends every key (onnxruntime 1.32.0), so the script fails on that row only.
    pytest.importorskip("onnxruntime")
    from kfuzz.present.standalone import standalone

    case = {"shape": [1, 2, 3, 5, 8], "dtype": "float16", "causal": True,
            "q": {"kind": "normal", "scale": 1.0}, "kv": {"kind": "normal", "scale": 1.0},
            "seed": 11}
    script = tmp_path / "mha.py"
    script.write_text(standalone(_row("ops.sdpa", "ort_mha", case)))
    ran = _run(script, tmp_path)
    assert "input query: float16 [1, 3, 16]" in ran.stdout, ran.stdout + ran.stderr
    assert ran.returncode == 1 and "FAIL" in ran.stdout
    rows = {line.split("]")[0] for line in ran.stdout.splitlines() if line.startswith("  at")}
    assert rows and all(r.startswith("  at [0, 2,") for r in rows), ran.stdout

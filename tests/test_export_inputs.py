"""`kfuzz corpus export ID --inputs case.npz`: the case's inputs, bit for bit, readable with
NumPy alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from kfuzz import run_case
from kfuzz.execute.executor import materialise_case
from kfuzz.execute.findings import Finding
from kfuzz.store.corpus import CorpusStore
from kfuzz.targets import registry as targets

BF16 = {"shape": [2, 8], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 1.0},
        "seed": 1, "materialise": 2}
RMS_FP16 = {"shape": [3, 5], "dtype": "float16", "eps": 1e-06, "seed": 7, "materialise": 2,
            "x": {"kind": "uniform", "low": -2.0, "high": 2.0}}

# Runs with NumPy alone (torch and kfuzz must stay unimported): each array's dtype, shape and
# bytes, and the metadata.
LOADER = """
import json, sys
import numpy as np
z = np.load(sys.argv[1])
out = {"meta": json.loads(z["__kfuzz__"].item()), "arrays": {}}
for key in z.files:
    if key != "__kfuzz__":
        a = z[key]
        out["arrays"][key] = {"dtype": str(a.dtype), "shape": list(a.shape), "hex": a.tobytes().hex()}
assert "torch" not in sys.modules and "kfuzz" not in sys.modules
print(json.dumps(out))
"""


def _bits(tensor: torch.Tensor) -> str:
    cpu = tensor.contiguous()
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[cpu.element_size()]
    return cpu.view(view).numpy().tobytes().hex()


@pytest.fixture
def corpus(tmp_path):
    db = tmp_path / "c.db"
    keys = {}
    with CorpusStore(db) as store:
        outcome = run_case("ops.softmax", BF16, kernel="eager_lowp", comparator={"mode": "exact"})
        keys["softmax"] = store.record_finding(
            Finding("ops.softmax", "eager_lowp", "fp64", BF16, outcome, comparator={"mode": "exact"}))
        outcome = run_case("ops.rmsnorm", RMS_FP16, kernel="eager_lowp", comparator={"mode": "exact"})
        keys["rmsnorm"] = store.record_finding(
            Finding("ops.rmsnorm", "eager_lowp", "fp64", RMS_FP16, outcome, comparator={"mode": "exact"}))
    return db, keys


@pytest.mark.parametrize("which,target,case", [("softmax", "ops.softmax", BF16),
                                               ("rmsnorm", "ops.rmsnorm", RMS_FP16)])
def test_the_inputs_load_with_numpy_alone_bit_for_bit(kfuzz, corpus, tmp_path, which, target, case):
    db, keys = corpus
    out = tmp_path / "case.npz"
    result = kfuzz("corpus", "export", keys[which][:10], "--db", db, "--inputs", out)
    assert result.code == 0, result.err
    assert result.out == ""  # no script without -o
    assert result.err.startswith(f"wrote {out}: ")
    proc = subprocess.run([sys.executable, "-c", LOADER, str(out)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    inputs, params = materialise_case(targets.get(target), case)
    assert sorted(loaded["arrays"]) == sorted(inputs)
    meta = loaded["meta"]
    assert meta["format"] == "kfuzz-inputs/1" and meta["target"] == target
    assert meta["case"] == case and meta["params"] == params
    assert meta["signature"] == targets.get(target).signature
    for name, tensor in inputs.items():
        array = loaded["arrays"][name]
        described = meta["inputs"][name]
        dtype = str(tensor.dtype).removeprefix("torch.")
        assert described["dtype"] == dtype and described["shape"] == list(tensor.shape)
        assert array["shape"] == list(tensor.shape)
        assert array["dtype"] == described["stored_as"]
        assert array["dtype"] == ("uint16" if dtype == "bfloat16" else dtype)
        assert array["hex"] == _bits(tensor), name


def test_a_bf16_input_decodes_to_the_same_values(kfuzz, corpus, tmp_path):
    import numpy as np

    db, keys = corpus
    out = tmp_path / "case.npz"
    assert kfuzz("corpus", "export", keys["softmax"], "--db", db, "--inputs", out).code == 0
    bits = np.load(out)["x"]
    as_float = (bits.astype(np.uint32) << 16).view(np.float32)  # the README's recipe
    x = materialise_case(targets.get("ops.softmax"), BF16)[0]["x"]
    assert np.array_equal(as_float, x.float().numpy())
    assert torch.equal(torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16), x)


def test_with_o_both_files_are_written(kfuzz, corpus, tmp_path):
    db, keys = corpus
    script, npz = tmp_path / "repro.py", tmp_path / "case.npz"
    result = kfuzz("corpus", "export", keys["softmax"], "--db", db, "-o", script, "--inputs", npz)
    assert result.code == 0, result.err
    assert script.exists() and npz.exists() and result.out == ""


def test_a_missing_directory_an_existing_file_and_one_file_twice_are_one_line_errors(
        kfuzz, corpus, tmp_path):
    db, keys = corpus
    key = keys["softmax"]
    missing = tmp_path / "nowhere" / "case.npz"
    result = kfuzz("corpus", "export", key, "--db", db, "--inputs", missing)
    assert result.code == 2 and not missing.parent.exists()
    assert result.err == (f"kfuzz: error: --inputs {str(missing)!r}: no directory "
                          f"{str(missing.parent)!r}; create it first\n")
    existing = tmp_path / "case.npz"
    existing.write_text("keep me")
    result = kfuzz("corpus", "export", key, "--db", db, "--inputs", existing)
    assert result.code == 2 and existing.read_text() == "keep me"
    assert result.err == (f"kfuzz: error: --inputs {str(existing)!r} exists; pass --force to "
                          "overwrite it\n")
    # Nothing is written when the other file is refused.
    script = tmp_path / "repro.py"
    result = kfuzz("corpus", "export", key, "--db", db, "-o", script, "--inputs", existing)
    assert result.code == 2 and not script.exists() and existing.read_text() == "keep me"
    result = kfuzz("corpus", "export", key, "--db", db, "-o", script, "--inputs", script)
    assert result.code == 2 and result.err.count("\n") == 1 and "one file" in result.err
    assert kfuzz("corpus", "export", key, "--db", db, "--inputs", existing, "--force").code == 0
    assert existing.read_bytes()[:2] == b"PK"  # a zip: the .npz
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".kfuzz")) == []

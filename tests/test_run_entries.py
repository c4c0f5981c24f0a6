"""Run entries: TARGET@KERNEL fuzzes one kernel of a target as a campaign of its own, and
`run --all` adds one entry per third-party library kernel (ONNX Runtime, JAX)."""

from __future__ import annotations

import json
import sqlite3
import sys
import xml.etree.ElementTree as ET

import pytest
from kfuzz.run.plan import select_targets
from kfuzz.targets import registry

LIBRARY_MODULES = ("onnx", "onnxruntime", "jax")


def _library_kernels() -> dict[str, str]:
    """TARGET@KERNEL -> its library, for every library kernel of the targets in --all."""
    return {f"{name}@{k}": v.library for name, t in registry.all_targets().items() if t.in_all
            for k, v in t.kernels.items() if v.library}


def test_all_adds_an_entry_for_every_library_kernel_unless_kernel_names_one():
    entries = select_targets([], all=True)
    library = _library_kernels()
    assert {"ops.softmax@ort_softmax", "ops.rmsnorm@jax_rmsnorm", "ops.sdpa@ort_attention"} \
        <= set(library)
    assert set(library.values()) == {"onnxruntime", "jax"}
    assert set(library) <= set(entries)
    # Each target keeps its plain entry (its default kernel), once, before its library ones.
    plain = [e for e in entries if "@" not in e]
    assert plain == select_targets([], all=True, kernel="eager_fp32")
    assert entries.index("ops.softmax") < entries.index("ops.softmax@ort_softmax")
    assert len(entries) == len(set(entries)) == len(plain) + len(library)


def test_an_entry_runs_its_kernel_and_two_entries_of_one_target_keep_their_findings(
        kfuzz, db_path, tmp_path):
    junit = tmp_path / "j.xml"
    res = kfuzz("run", "ops.softmax@eager_lowp", "ops.softmax@eager_fp32", "--compare", "exact",
                "--max-examples", "30", "--shrink-seconds", "2", "--seed", "3", "--db", db_path,
                "--json", "--junit", junit)
    assert res.code == 1, res.err
    doc = res.json()
    assert [(t["target"], t["entry"], t["state"]) for t in doc["targets"]] == [
        ("ops.softmax", "ops.softmax@eager_lowp", "run"),
        ("ops.softmax", "ops.softmax@eager_fp32", "run")]
    assert [c["kernel"] for c in doc["campaigns"]] == ["eager_lowp", "eager_fp32"]
    found = {f["kernel"] for f in doc["findings"]}
    assert found == {"eager_lowp", "eager_fp32"}, doc["findings"]
    conn = sqlite3.connect(db_path)
    rows = conn.execute("select kernel, signature, fingerprint from findings").fetchall()
    by_kernel = {k: {(s, fp) for kk, s, fp in rows if kk == k} for k in found}
    # One failure in both kernels is two rows: a row never takes the other kernel's sighting.
    assert all(by_kernel.values()) and not by_kernel["eager_lowp"] & by_kernel["eager_fp32"]
    (targets, results), = conn.execute("select targets, results from runs").fetchall()
    assert json.loads(targets) == ["ops.softmax@eager_lowp", "ops.softmax@eager_fp32"]
    assert [r.get("entry") for r in json.loads(results)] == json.loads(targets)
    conn.close()
    suite = ET.parse(junit).getroot().find("testsuite")
    names = {c.get("name") for c in suite.iter("testcase")}
    assert {n.split("[")[1].split("-")[0] for n in names} == found


def test_a_library_entry_draws_only_the_dtypes_its_kernel_implements(kfuzz, db_path):
    res = kfuzz("run", "ops.softmax@ort_softmax", "--max-examples", "12", "--seed", "1",
                "--db", db_path)
    assert res.code in (0, 1), res.err
    assert "ops.softmax@ort_softmax: dtype bfloat16 ('ort_softmax' implements float32, " \
           "float16)" in res.out
    table = res.out.split("\n\n")[0].splitlines()
    assert table[1].split()[:2] == ["ops.softmax", "ort_softmax"]
    coverage = next(line for line in res.out.splitlines()
                    if line.startswith("  ops.softmax@ort_softmax: "))
    assert "float32" in coverage and "bfloat16" not in coverage
    assert "[W:onnxruntime" not in res.err + res.out and "[E:onnxruntime" not in res.err


@pytest.mark.parametrize("argv, message", [
    (["ops.softmax@"], "run entry 'ops.softmax@' lacks its kernel; write TARGET@KERNEL"),
    (["@ort_softmax"], "run entry '@ort_softmax' lacks its target; write TARGET@KERNEL"),
    (["ops.softmax@nope"], "run entry 'ops.softmax@nope': target 'ops.softmax' has no kernel "
                           "'nope'; known: eager_lowp, "),
    (["ops.nope@ort_softmax"], "no target 'ops.nope'; known: "),
    (["ops.softmax@ort_softmax", "--kernel", "eager_fp32"],
     "run entry 'ops.softmax@ort_softmax' names its kernel and --kernel eager_fp32 names "
     "another; drop --kernel, or name the target alone (ops.softmax)"),
])
def test_bad_entries_are_one_line_errors(kfuzz, db_path, argv, message):
    res = kfuzz("run", *argv, "--max-examples", "2", "--db", db_path)
    assert res.code == 2
    assert len(res.err.strip().splitlines()) == 1 and res.out == ""
    assert res.err.startswith("kfuzz: error: " + message), res.err
    assert not db_path.exists()  # refused before the corpus is opened


def _only_softmax(monkeypatch):
    """--all over ops.softmax alone (its plain entry and its library kernels), to stay fast."""
    softmax = registry.get("ops.softmax")
    monkeypatch.setattr(registry, "all_targets", lambda: {"ops.softmax": softmax})


def test_all_skips_library_entries_whose_library_is_missing_naming_the_extra(
        kfuzz, db_path, tmp_path, monkeypatch):
    _only_softmax(monkeypatch)
    for module in LIBRARY_MODULES:  # as on a machine without the extras
        monkeypatch.setitem(sys.modules, module, None)
    junit = tmp_path / "j.xml"
    res = kfuzz("run", "--all", "--max-examples", "3", "--seed", "0", "--db", db_path, "--json",
                "--junit", junit)
    assert res.code in (0, 1), res.err
    doc = res.json()
    assert [t["state"] for t in doc["targets"]] == ["run", "skipped", "skipped", "skipped",
                                                    "skipped"]
    skipped = {s["entry"]: s["reason"] for s in doc["skipped"]}
    assert set(skipped) == {"ops.softmax@ort_softmax", "ops.softmax@jax_softmax",
                            "ops.softmax@jax_softmax_jit", "ops.softmax@jax_softmax_jit_pow2"}
    assert skipped["ops.softmax@ort_softmax"] == (
        "ops.softmax kernel 'ort_softmax' cannot run here: onnx is not installed; "
        "pip install 'kfuzz[onnxruntime]'")
    assert skipped["ops.softmax@jax_softmax"].endswith(
        "jax is not installed; pip install 'kfuzz[jax]'")
    assert not doc["findings"] or {f["kernel"] for f in doc["findings"]} == {"eager_lowp"}
    suite = ET.parse(junit).getroot().find("testsuite")
    assert {c.get("name") for c in suite.iter("testcase") if c.find("skipped") is not None} \
        == set(skipped)
    text = kfuzz("run", "--all", "--max-examples", "3", "--seed", "0", "--db", db_path)
    assert "  ops.softmax@jax_softmax_jit: ops.softmax kernel 'jax_softmax_jit' cannot run " \
           "here: jax is not installed; pip install 'kfuzz[jax]'" in text.out


def test_a_named_library_entry_without_its_library_is_a_one_line_error(
        kfuzz, db_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)
    res = kfuzz("run", "ops.softmax@jax_softmax", "--max-examples", "2", "--db", db_path)
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1
    assert res.err.strip() == ("kfuzz: error: ops.softmax kernel 'jax_softmax' cannot run here: "
                               "jax is not installed; pip install 'kfuzz[jax]'")


def test_all_runs_every_library_entry_where_the_libraries_are_installed(
        kfuzz, db_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("jax")
    _only_softmax(monkeypatch)
    res = kfuzz("run", "--all", "--max-examples", "3", "--seed", "0", "--db", db_path, "--json")
    assert res.code in (0, 1), res.err
    doc = res.json()
    assert [(t.get("entry", t["target"]), t["state"]) for t in doc["targets"]] == [
        ("ops.softmax", "run"), ("ops.softmax@ort_softmax", "run"),
        ("ops.softmax@jax_softmax", "run"), ("ops.softmax@jax_softmax_jit", "run"),
        ("ops.softmax@jax_softmax_jit_pow2", "run")]
    assert [c["kernel"] for c in doc["campaigns"]] == [
        "eager_lowp", "ort_softmax", "jax_softmax", "jax_softmax_jit", "jax_softmax_jit_pow2"]
    assert not [f for f in doc["findings"] if f["failure"] == "error"], doc["findings"]


def test_targets_names_the_extra_each_library_kernel_needs(kfuzz):
    res = kfuzz("targets", "ops.softmax")
    lines = {line.split()[1].rstrip(":"): line for line in res.out.splitlines()
             if line.startswith("  kernel ")}
    assert lines["ort_softmax"].endswith("needs kfuzz[onnxruntime]")
    assert lines["jax_softmax_jit"].endswith("needs kfuzz[jax]")
    assert "needs kfuzz" not in lines["eager_lowp"]


def test_the_progress_line_names_the_entry():
    from kfuzz.run.plan import RunOptions
    from kfuzz.run.runner import run
    from kfuzz.search.campaign import CampaignConfig

    seen: list[str] = []
    report = run(RunOptions(targets=["ops.softmax@eager_fp32", "ops.rmsnorm"],
                            campaign=CampaignConfig(target="", max_examples=3, seed=0)),
                 progress=lambda info: seen.append(info["target"]))
    assert [r.name for r in report.runs] == ["ops.softmax@eager_fp32", "ops.rmsnorm"]
    assert set(seen) == {"ops.softmax@eager_fp32", "ops.rmsnorm"}

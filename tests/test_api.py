"""The Python API: kfuzz.fuzz, kfuzz.check, kfuzz.target, kfuzz.tensor, kfuzz.run_case."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys

import kfuzz
import pytest
import torch
from kfuzz.errors import BadCallable, OptionError, PluginError

QUICK = {"max_examples": 40, "seed": 1, "shrink_seconds": 5}


@pytest.fixture(autouse=True)
def _registry_restored(monkeypatch):
    """Targets declared by a test live only as long as the test."""
    from kfuzz.targets import declare, registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry.all_targets()))
    monkeypatch.setattr(declare, "_DECLARED", set(declare._DECLARED))


# Plain functions with the signature of ops.rmsnorm's kernels: fn(x, weight, *, eps).
def rmsnorm_without_eps_in_input_dtype(x, weight, *, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True)) * weight


def rmsnorm_like_the_oracle(x, weight, *, eps):
    d = x.double()
    y = d * torch.rsqrt((d * d).mean(-1, keepdim=True) + eps) * weight.double()
    return y.to(x.dtype)


def gelu_fp64(x):
    return torch.nn.functional.gelu(x.double())


def gelu_tanh(x):  # the tanh approximation: off by more than one rounding
    return torch.nn.functional.gelu(x, approximate="tanh")


def gelu_rounded_once(x):
    return torch.nn.functional.gelu(x.double()).to(x.dtype)


@pytest.mark.slow
def test_fuzz_finds_and_shrinks_a_faulty_function_on_a_builtin_target():
    result = kfuzz.fuzz("ops.rmsnorm", kernel=rmsnorm_without_eps_in_input_dtype, **QUICK)
    assert result.failed and result.examples == 40
    assert result.kernel == "tests.test_api:rmsnorm_without_eps_in_input_dtype"
    shrunk = next(f for f in result.findings if f.kind == "shrunk")
    assert shrunk.shrink["size_after"] <= shrunk.shrink["size_before"]
    assert shrunk.outcome.status == "fail"
    assert result.closest is not None and result.closest.score > 1  # past what was allowed


def test_check_passes_a_correct_function_and_reports_its_closest_call():
    result = kfuzz.check("ops.rmsnorm", kernel=rmsnorm_like_the_oracle, **QUICK)
    assert not result.findings and result.examples == 40
    assert result.closest is not None and result.closest.status == "pass"
    assert 0 <= result.closest.score <= 1


def test_check_raises_with_the_shrunk_case_first_then_the_comparison_and_how_to_reproduce():
    with pytest.raises(AssertionError) as info:
        kfuzz.check("ops.rmsnorm", kernel=rmsnorm_without_eps_in_input_dtype, **QUICK)
    message = str(info.value)
    lines = message.splitlines()
    # Without eps a row of zeros divides 0 by 0 (NaN where the oracle gives 0), and rounding
    # in the input dtype loses precision elsewhere: either may be the first finding.
    assert re.match(r"kfuzz: (mismatch|nonfinite) on ops\.rmsnorm \(kernel tests\.test_api:"
                    r"rmsnorm_without_eps_in_input_dtype vs oracle fp64\)", lines[0]), lines[0]
    assert lines[2] == "Falsifying case:"
    assert message.index("Falsifying case:") < message.index("Mismatched elements:") < \
        message.index("Reproduce:")
    # The reproduction line runs as printed and fails the same way.
    call = next(line.strip() for line in lines if line.strip().startswith("kfuzz.run_case("))
    outcome = eval(call, {"kfuzz": kfuzz})  # noqa: S307 - the message's own text
    assert outcome.status == "fail"


def test_a_target_declared_in_a_few_lines_finds_a_faulty_kernel_and_passes_a_correct_one():
    gelu = kfuzz.target(
        "test.gelu",
        inputs={"x": kfuzz.tensor("rows cols", dtypes=["bfloat16", "float16"])},
        oracle=gelu_fp64,
    )
    assert gelu.signature == "fn(x) -> y"
    found = kfuzz.fuzz(gelu, kernel=gelu_tanh, comparator="exact", **QUICK)
    assert found.failed
    case = next(f for f in found.findings if f.kind == "shrunk").case
    assert case["rows"] * case["cols"] <= 4, case
    assert not kfuzz.fuzz("test.gelu", kernel=gelu_rounded_once, comparator="exact",
                          **QUICK).failed


def test_shape_symbols_are_shared_and_dtypes_follow_another_input():
    def rms_fp64(x, weight, *, eps):
        return rmsnorm_like_the_oracle(x, weight, eps=eps)

    rms = kfuzz.target(
        "test.rms",
        inputs={"x": kfuzz.tensor("rows cols", dtypes=["bfloat16", "float16"]),
                "weight": kfuzz.tensor("cols", dtypes="x", values=["normal"])},
        params={"eps": [1e-6, 1e-5]},
        oracle=rms_fp64,
        dims={"rows": (1, 8), "cols": (1, 64)},
    )
    assert rms.signature == "fn(x, weight, *, eps) -> y"
    seen = []

    def kernel(x, weight, *, eps):
        seen.append((tuple(x.shape), tuple(weight.shape), x.dtype, weight.dtype, eps))
        return rms_fp64(x, weight, eps=eps)

    assert not kfuzz.fuzz(rms, kernel=kernel, **QUICK).failed
    assert seen and all(xs[1] == ws[0] and xd == wd and eps in (1e-6, 1e-5)
                        for xs, ws, xd, wd, eps in seen)
    assert {xs[0] for xs, *_ in seen} <= set(range(1, 9))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"comparator": {"z": kfuzz.Comparator()}},
         "target 'test.bad': comparator keys ['z'] do not match the outputs ['y']"),
        ({"inputs": {"x": kfuzz.tensor("rows")}, "dims": {"cols": (1, 4)}},
         "target 'test.bad': dims names 'cols', which no input's shape uses (symbols: rows)"),
        ({"inputs": {"x": kfuzz.tensor("rows", dtypes="w")}},
         "target 'test.bad': input 'x' takes its dtype from 'w', which is not another input"),
        ({"inputs": {"x": kfuzz.tensor("rows", dtypes="w"), "w": kfuzz.tensor("rows", dtypes="x")}},
         "target 'test.bad': inputs w, x take their dtypes from each other; give one of them "
         "dtypes=[...]"),
        ({"outputs": {"y": kfuzz.tensor("rows cols", dtypes=["float32", "float16"])}},
         "target 'test.bad': output 'y' needs one dtype or an input's name"),
        ({"params": {"seed": 1}}, "target 'test.bad': 'seed' is reserved for the case"),
        ({"oracle": {"ref": 3}}, "target 'test.bad': oracle 'ref' is a int, not a callable"),
    ],
    ids=["comparator-keys", "unknown-dim", "dtype-source", "dtype-cycle", "output-dtypes", "reserved",
         "oracle-not-callable"],
)
def test_declaration_mistakes_are_one_line_errors(kwargs, message):
    args = {"inputs": {"x": kfuzz.tensor("rows cols")}, "oracle": gelu_fp64, **kwargs}
    with pytest.raises(PluginError) as info:
        kfuzz.target("test.bad", **args)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "shape, dtypes, message",
    [("rows 3x", None, "tensor('rows 3x'): '3x' is neither a size nor a symbol"),
     ("rows", ["float8"], "tensor('rows'): unknown dtype 'float8'"),
     ("rows", "float16", "tensor('rows', dtypes='float16'): pass a list, dtypes=['float16']")],
)
def test_tensor_spec_mistakes(shape, dtypes, message):
    with pytest.raises(PluginError) as info:
        kfuzz.tensor(shape, dtypes=dtypes)
    assert str(info.value).startswith(message)


def test_declaring_a_builtin_name_is_refused_and_redeclaring_replaces():
    with pytest.raises(PluginError, match="registered twice"):
        kfuzz.target("ops.softmax", inputs={"x": kfuzz.tensor("n")}, oracle=gelu_fp64)
    first = kfuzz.target("test.again", inputs={"x": kfuzz.tensor("n")}, oracle=gelu_fp64)
    second = kfuzz.target("test.again", inputs={"x": kfuzz.tensor("n")}, oracle=gelu_fp64)
    assert first is not second
    from kfuzz.targets import registry

    assert registry.get("test.again") is second


def test_a_lambda_runs_in_process_and_is_refused_for_a_worker():
    result = kfuzz.fuzz("ops.softmax", kernel=lambda x: torch.softmax(x.double(), -1).to(x.dtype),
                        **QUICK)
    assert not result.failed and result.kernel.startswith("tests.test_api:")
    with pytest.raises(OptionError, match="exists only in this process"):
        kfuzz.fuzz("ops.softmax", kernel=lambda x: x, isolate=True, **QUICK)


def test_a_target_declared_here_is_refused_for_worker_processes():
    kfuzz.target("test.local", inputs={"x": kfuzz.tensor("n")}, oracle=gelu_fp64)
    with pytest.raises(OptionError, match="'test.local' was declared in this process only"):
        kfuzz.fuzz("test.local", kernel=gelu_tanh, workers=2, **QUICK)


def test_a_kernel_that_does_not_fit_the_signature_fails_before_the_search():
    def rms(x, w, eps):
        return x

    with pytest.raises(BadCallable) as info:
        kfuzz.fuzz("ops.rmsnorm", kernel=rms, **QUICK)
    assert "expected fn(x, weight, *, eps), got rms(x, w, eps)" in str(info.value)


@pytest.mark.slow
def test_db_none_stores_nothing_and_db_stores_the_run_and_findings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kfuzz.fuzz("ops.softmax", kernel="eager_lowp", comparator="exact", **QUICK)
    assert list(tmp_path.iterdir()) == []
    db = tmp_path / "c.db"
    result = kfuzz.fuzz("ops.softmax", kernel="eager_lowp", comparator="exact", db=db, **QUICK)
    conn = sqlite3.connect(db)
    stored = {r[0] for r in conn.execute("select fingerprint from findings")}
    assert {f.fingerprint for f in result.findings} <= stored
    assert conn.execute("select id, status from runs").fetchall() == [(result.run_id, "done")]
    conn.close()


def test_unknown_option_and_bad_values_name_the_keyword():
    with pytest.raises(TypeError, match="unexpected keyword argument 'max_example'"):
        kfuzz.fuzz("ops.softmax", kernel="eager_lowp", max_example=3)
    with pytest.raises(OptionError) as info:
        kfuzz.fuzz("ops.softmax", kernel="eager_lowp", max_examples=0)
    assert str(info.value) == "max_examples=0 must be at least 1"


def test_import_kfuzz_is_cheap_and_leaves_torch_unimported(tmp_path):
    code = "import sys, kfuzz; print('torch' in sys.modules, 'hypothesis' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.stdout.split() == ["False", "False"], proc.stderr

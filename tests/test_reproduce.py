"""kfuzz.check's "Reproduce:" lines are Python that runs; an error finding keeps where the
kernel raised; no .hypothesis/ is left in the working directory."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import kfuzz
import pytest
import torch
from kfuzz.api import py_literal
from kfuzz.execute.executor import FRAMES_HEADER, Job, Outcome
from kfuzz.execute.findings import Finding
from kfuzz.store.corpus import CorpusStore

QUICK = {"max_examples": 30, "seed": 1, "shrink_seconds": 5}
SOFTMAX = {"shape": [2, 8], "dtype": "bfloat16", "x": {"kind": "normal", "scale": 1.0},
           "seed": 1, "materialise": 2}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _registry_restored(monkeypatch):
    """Targets declared by a test live only as long as the test."""
    from kfuzz.targets import declare, registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry.all_targets()))
    monkeypatch.setattr(declare, "_DECLARED", set(declare._DECLARED))


def softmax_scaled(x):  # off by a factor: fails every case
    return (torch.softmax(x.float(), -1) * 1.5).to(x.dtype)


def _message(target, kernel, **kwargs) -> str:
    with pytest.raises(AssertionError) as info:
        kfuzz.check(target, kernel=kernel, **{**QUICK, **kwargs})
    return str(info.value)


def _reproduce(message: str) -> str:
    """The Reproduce block as source: compiles, or the test fails."""
    block = message.split("\nReproduce:\n", 1)[1]
    source = textwrap.dedent(block)
    compile(source, "<reproduce>", "exec")
    return source


def _code_lines(source: str) -> list[str]:
    return [line for line in source.splitlines() if line and not line.startswith("#")]


def _run_case_only(source: str) -> str:
    """The block without its kfuzz.fuzz line (a whole search), with the run_case result kept."""
    lines = [line for line in source.splitlines() if not line.startswith("kfuzz.fuzz(")]
    return "\n".join(f"outcome = {line}" if line.startswith("kfuzz.run_case(") else line
                     for line in lines)


def _fresh_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


# -- the case as a Python literal ---------------------------------------------------------


@pytest.mark.parametrize("value", [
    {"causal": True, "mask": None, "scale": 0.1, "eps": 1e-06, "big": 1.7976931348623157e308,
     "tiny": 5e-324, "neg": -0.0, "shape": [1, 3], "nested": {"b": False, "a": [None, "s"]}},
    {"inf": math.inf, "ninf": -math.inf, "pair": (1, 2), "one": (3,), "text": "it's \"q\""},
])
def test_a_case_prints_as_a_python_literal_that_evaluates_back_to_it(value):
    text = py_literal(value)
    assert "true" not in text and "null" not in text
    assert eval(text, {}) == value  # noqa: S307 - our own output
    assert list(eval(text, {})) == sorted(value)  # keys sorted, as in the corpus  # noqa: S307


def test_nan_prints_as_float_nan():
    text = py_literal({"x": math.nan})
    assert text == "{'x': float('nan')}"
    assert math.isnan(eval(text, {})["x"])  # noqa: S307


def test_a_case_with_booleans_and_none_reproduces_as_printed():
    # A declared target whose cases carry True/False and None: the JSON spelling
    # (true, null) would be a NameError in Python.
    def fp64(x, *, causal, bias):
        assert causal in (True, False) and bias is None
        return torch.softmax(x.double(), -1)

    kfuzz.target("test.flags", inputs={"x": kfuzz.tensor("rows cols", dtypes=["bfloat16"])},
                 params={"causal": [True, False], "bias": None}, oracle=fp64)
    message = _message("test.flags", scaled_with_flags)
    case_line = message.split("Falsifying case:\n", 1)[1].splitlines()[0]
    case = eval(case_line.strip(), {})  # noqa: S307
    assert case["bias"] is None and case["causal"] in (True, False)
    assert "null" not in case_line and "true" not in case_line
    source = _reproduce(message)
    assert ("# target 'test.flags' was declared in this process with kfuzz.target(...): "
            "declare it again before run_case") in source.splitlines()
    code = _code_lines(source)
    assert code[0] == "import kfuzz"
    assert code[1].startswith("kfuzz.run_case('test.flags', {") and \
        "kernel='tests.test_reproduce:scaled_with_flags'" in code[1]
    assert code[2].startswith("kfuzz.fuzz('test.flags', kernel=") and \
        code[2].endswith(", seed=1)  # searches again")
    space: dict = {}
    exec(_run_case_only(source), space)  # noqa: S102 - the message's own text
    assert space["outcome"].status == "fail"
    assert eval(code[1].split(", ", 1)[1].rsplit(", kernel=", 1)[0], {}) == case  # noqa: S307


def scaled_with_flags(x, *, causal, bias):
    return softmax_scaled(x)


SCALED_LAMBDA = lambda x: softmax_scaled(x)  # noqa: E731 - the point of the tests


def test_a_lambda_kernel_is_a_comment_and_a_variable_not_broken_code():
    kernel = SCALED_LAMBDA
    message = _message("ops.softmax", kernel)
    source = _reproduce(message)
    comments = [line for line in source.splitlines() if line.startswith("#")]
    assert comments == ["# kernel = <your kernel: pass the same callable> (a lambda, "
                        "tests.test_reproduce:<lambda>, has no name that another process "
                        "can import)"]
    code = _code_lines(source)
    assert all("<lambda>" not in line for line in code)
    assert ", kernel=kernel, oracle='fp64')" in code[1] and "kernel=kernel" in code[2]
    space = {"kernel": kernel}
    exec(_run_case_only(source), space)  # noqa: S102
    assert space["outcome"].status == "fail"


def test_a_closure_kernel_and_a_closure_oracle_are_named_as_such():
    scale = 1.5

    def kernel(x):
        return (torch.softmax(x.float(), -1) * scale).to(x.dtype)

    def oracle(x):
        return torch.softmax(x.double(), -1)

    source = _reproduce(_message("ops.softmax", kernel, oracle=oracle))
    comments = [line for line in source.splitlines() if line.startswith("#")]
    assert len(comments) == 2
    assert comments[0].startswith("# kernel = <your kernel: pass the same callable> "
                                  "(a nested function or closure, ")
    assert comments[1].startswith("# oracle = <your oracle: pass the same callable> ")
    assert "kernel=kernel, oracle=oracle" in _code_lines(source)[1]
    space = {"kernel": kernel, "oracle": oracle}
    exec(_run_case_only(source), space)  # noqa: S102
    assert space["outcome"].status == "fail"


KERNEL_FILE = '''
import torch


def softmax_scaled(x):
    return (torch.softmax(x.float(), -1) * 1.5).to(x.dtype)
'''


@pytest.mark.parametrize("in_sys_modules", [True, False])
def test_a_kernel_of_a_module_loaded_by_path_is_named_by_its_file(tmp_path, in_sys_modules):
    path = tmp_path / "by_path" / "kernels_by_path.py"
    path.parent.mkdir()
    path.write_text(KERNEL_FILE)
    name = f"loaded_by_path_{in_sys_modules}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    if in_sys_modules:
        sys.modules[name] = module  # importable here by that name, nowhere else
    try:
        spec.loader.exec_module(module)
        source = _reproduce(_message("ops.softmax", module.softmax_scaled))
    finally:
        sys.modules.pop(name, None)
    assert f"kernel={str(path) + ':softmax_scaled'!r}" in _code_lines(source)[1]
    assert not any(line.startswith("#") for line in source.splitlines())
    # It runs as printed in a fresh interpreter, from another directory.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = _fresh_python(_run_case_only(source) + "\nprint(outcome.status)", elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["fail"]


PLUGIN_FILE = '''
import torch

import kfuzz


def fp64(x):
    return torch.softmax(x.double(), -1)


kfuzz.target("test.plugged", inputs={"x": kfuzz.tensor("rows cols", dtypes=["bfloat16"])},
             oracle=fp64)
'''


def test_a_target_from_a_plugin_is_loaded_again_by_the_lines(tmp_path):
    plugin = tmp_path / "plugged.py"
    plugin.write_text(PLUGIN_FILE)
    from kfuzz.targets import registry

    registry.load_plugin(str(plugin))
    try:
        source = _reproduce(_message("test.plugged", softmax_scaled))
    finally:
        registry._PLUGINS.pop(str(plugin), None)
    code = _code_lines(source)
    assert code[:3] == ["import kfuzz", "import kfuzz.targets",
                        f"kfuzz.targets.load_plugin({str(plugin)!r})"]
    assert "declared in this process" not in source
    proc = _fresh_python(_run_case_only(source) + "\nprint(outcome.status)", REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["fail"]


# -- where an error was raised --------------------------------------------------------------

RAISING_FILE = '''
def _helper(x):
    raise ValueError("negative width")


def kernel(x):
    return _helper(x)
'''


@pytest.fixture
def raising(tmp_path):
    path = tmp_path / "raising_kernel.py"
    path.write_text(RAISING_FILE)
    return path


def _expected_frames(path):
    return [{"file": str(path), "line": 7, "function": "kernel"},
            {"file": str(path), "line": 3, "function": "_helper"}]


def test_an_error_keeps_the_kernels_frames_in_process_and_isolated(raising):
    from kfuzz.execute.isolation import IsolatedExecutor

    kernel = f"{raising}:kernel"
    here = kfuzz.run_case("ops.softmax", SOFTMAX, kernel=kernel)
    assert here.status == "error" and here.error_type == "ValueError"
    assert here.error_frames == _expected_frames(raising)
    assert here.error.splitlines()[:2] == ["ValueError: negative width", FRAMES_HEADER]
    assert Outcome.from_dict(json.loads(json.dumps(here.to_dict()))).error_frames == \
        here.error_frames
    executor = IsolatedExecutor(case_timeout=120)
    try:
        isolated = executor.evaluate([Job("ops.softmax", kernel, "fp64", SOFTMAX)])[0]
    finally:
        executor.close()
    assert isolated.status == "error" and isolated.error_frames == _expected_frames(raising)
    assert isolated.error == here.error


def test_check_and_corpus_show_say_where_the_kernel_raised(raising, tmp_path, kfuzz):
    message = _message("ops.softmax", f"{raising}:kernel", max_examples=5)
    assert f'  File "{raising}", line 3, in _helper' in message.split("Reproduce:")[0]
    outcome = kfuzz_run_case_error(raising)
    db = tmp_path / "c.db"
    with CorpusStore(db) as store:
        key = store.record_finding(Finding("ops.softmax", f"{raising}:kernel", "fp64", SOFTMAX,
                                           outcome))
    shown = kfuzz("corpus", "show", key[:12], "--db", db)
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("error "))
    assert lines[at].split(None, 1)[1] == "ValueError: negative width"
    assert lines[at + 1] == f'kernel frames       File "{raising}", line 7, in kernel'
    assert lines[at + 2] == f'                    File "{raising}", line 3, in _helper (raised here)'
    as_json = kfuzz("corpus", "show", key[:12], "--db", db, "--json").json()
    assert as_json["error_frames"] == _expected_frames(raising)
    assert as_json["error_type"] == "ValueError"


def kfuzz_run_case_error(path):
    return kfuzz.run_case("ops.softmax", SOFTMAX, kernel=f"{path}:kernel")


def test_the_show_parser_reads_the_executors_header():
    from kfuzz.cli.corpus import FRAMES_HEADER as shown_header
    from kfuzz.cli.corpus import error_frames

    assert shown_header == FRAMES_HEADER
    assert error_frames("RuntimeError: x\nsome stderr") == ("RuntimeError: x\nsome stderr", [])
    assert error_frames(None) == (None, [])


# -- no .hypothesis/ left behind -------------------------------------------------------------


def _clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("HYPOTHESIS_STORAGE_DIRECTORY", "PYTHONPATH")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env


def test_kfuzz_run_leaves_no_hypothesis_folder(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    script = Path(sys.executable).parent / "kfuzz"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kfuzz.cli"]
    proc = subprocess.run([*command, "run", "ops.softmax", "--max-examples", "20", "--db", "X"],
                          cwd=work, capture_output=True,
                          text=True, env=_clean_env(tmp_path), timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    assert not (work / ".hypothesis").exists()
    assert (work / "X").exists()


def test_kfuzz_fuzz_leaves_no_hypothesis_folder_and_restores_the_users(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    code = textwrap.dedent("""
        import kfuzz
        from hypothesis import configuration
        kfuzz.fuzz("ops.softmax", kernel="eager_fp32", max_examples=20, seed=1)
        print(configuration.storage_directory("examples", intent_to_write=False).path)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True,
                          text=True, env=_clean_env(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not (work / ".hypothesis").exists()
    # The user's own Hypothesis tests still keep their database where they would have.
    assert Path(proc.stdout.strip()) == work.resolve() / ".hypothesis" / "examples"

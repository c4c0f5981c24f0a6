"""End to end through the CLI on a temporary corpus."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from kfuzz.cli.app import build_parser

FIND = ["--compare", "exact", "--max-ratio", "0.005", "--max-examples", "60", "--seed", "7"]


def test_lowp_rmsnorm_found_shrunk_stored_replayed_then_fixed(kfuzz, db_path):
    # Without the overflow edge, where x*x overflows the FP32 kernel too (the next test).
    run = kfuzz("run", "ops.rmsnorm", "--kernel", "eager_lowp", *FIND, "--exclude", "overflow",
                "--db", db_path, "--json")
    assert run.code == 1, run.err
    doc = run.json()
    shrunk = [f for f in doc["findings"] if f["kind"] == "shrunk"]
    assert shrunk, doc
    finding = shrunk[0]
    assert finding["metrics"]["y"]["mismatch_ratio"] > 0.005
    # Shrunk: the smallest shape Hypothesis can reach while still failing is tiny.
    rows, hidden = finding["case"]["shape"]
    assert rows * hidden <= 16, finding["case"]
    assert finding["shrink"]["size_after"] <= finding["shrink"]["size_before"]

    replay = kfuzz("replay", "--db", db_path, "--json")
    assert replay.code == 1
    verdicts = {r["id"]: r["verdict"] for r in replay.json()["replays"]}
    assert verdicts[finding["id"]] == "still failing"

    fixed = kfuzz("replay", "--db", db_path, "--id", finding["id"], "--kernel", "eager_fp32",
                  "--json")
    assert fixed.code == 0, fixed.out
    assert [(r["verdict"], r["substitute"]) for r in fixed.json()["replays"]] == [("fixed", True)]
    # Another kernel passing does not fix the finding: eager_lowp still fails it.
    listing = kfuzz("corpus", "list", "--db", db_path, "--json")
    assert {row["status"] for row in listing.json()["findings"]} == {"open"}


def test_fp32_rmsnorm_fails_only_where_x_squared_overflows(kfuzz, db_path):
    # The FP32-upcast RMSNorm is within 0.5% in exact comparison everywhere except for BF16
    # inputs near the overflow edge, where x*x overflows FP32 (same range as BF16) and the
    # output collapses to 0: a real fault of the plain upcast, which the fuzzer finds. (FP32
    # inputs are left out: exact comparison of an FP32 kernel fails on its final rounding.)
    run = kfuzz("run", "ops.rmsnorm", "--kernel", "eager_fp32", "--compare", "exact",
                "--max-ratio", "0.005", "--max-examples", "200", "--seed", "1",
                "--pin", "dtype=bfloat16", "--db", db_path, "--json")
    assert run.json()["campaigns"][0]["examples"] == 200
    # Exact comparison also sees the kernel's double rounding (FP32, then BF16): one BF16 ULP
    # on a one-element case, error class "rounding". Every larger error is the overflow.
    wrong = [f for f in run.json()["findings"] if f["signature"] != "y:mismatch:rounding"]
    assert wrong
    for finding in wrong:
        x = finding["case"]["x"]
        # Near-overflow values: the edge kind, or whole rows of them (the edge_rows regime).
        assert (x["kind"], x.get("edge")) == ("edge", "overflow") or \
            x.get("edge_rows", {}).get("edge") == "overflow", x
    shrunk = [f for f in wrong if f["kind"] == "shrunk"]
    assert [f["case"]["shape"] for f in shrunk] == [[1, 1]]
    for finding in run.json()["findings"]:
        if finding["signature"] == "y:mismatch:rounding":
            assert finding["metrics"]["y"]["max_ulp"] <= 1, finding


def test_targets_json_lists_every_target_with_its_contract(kfuzz):
    res = kfuzz("targets", "--json")
    assert res.code == 0
    targets = {t["name"]: t for t in res.json()["targets"]}
    assert {"ops.rmsnorm", "ops.softmax", "ops.rope"} <= set(targets)
    for t in targets.values():
        assert t["kernels"] and t["oracles"] and t["signature"]
        assert t["default_kernel"] in t["kernels"]
        assert set(t["default_comparator"]) == set(t["outputs"])
        assert t["inputs"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "ops.nope"], "kfuzz: error: no target 'ops.nope'; known: "),
        (["run", "ops.rmsnorm", "--kernel", "nope"],
         "kfuzz: error: target 'ops.rmsnorm' has no kernel 'nope'; known: eager_lowp, eager_fp32, "
         "compiled_lowp, compiled_fp32"),
        (["run", "ops.rmsnorm", "--kernel", "nomodule:"],
         "kfuzz: error: malformed --kernel 'nomodule:'; expected module:function, "
         "e.g. mypkg.kernels:rmsnorm"),
        (["run", "ops.rmsnorm", "--kernel", "no_such_module_xyz:f"],
         "kfuzz: error: --kernel 'no_such_module_xyz:f': cannot import 'no_such_module_xyz': "
         "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
        (["run", "ops.rmsnorm", "--oracle", "math:nope"],
         "kfuzz: error: --oracle 'math:nope': 'math' has no attribute 'nope'"),
        (["run", "ops.rmsnorm", "--rtol", "0.1"],
         "kfuzz: error: --rtol given without --atol; pass both --atol and --rtol"),
        (["run", "ops.rmsnorm", "--compare", "exact", "--atol", "1", "--rtol", "0"],
         "kfuzz: error: exact mode means atol = rtol = 0"),
        (["run"], "kfuzz: error: no target given; name one (see `kfuzz targets`) or pass --all"),
        (["run", "ops.rmsnorm", "--profile", "weekly"], "kfuzz run: error: argument --profile"),
        (["run", "ops.rmsnorm", "--max-examples", "0"],
         "kfuzz: error: --max-examples 0 must be at least 1"),
        (["run", "ops.rmsnorm", "--device", "cuda"], "kfuzz: error: --device cuda: "),
        (["corpus", "show", "abc", "--db", "/nonexistent/c.db"],
         "kfuzz: error: no corpus at '/nonexistent/c.db'; pass --db PATH"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v)[:40],
)
def test_bad_input_one_line_exit_2(kfuzz, db_path, argv, message):
    if argv[0] == "run":
        argv = [*argv, "--db", str(db_path), "--max-examples", "5"] if "--max-examples" not in \
            argv else [*argv, "--db", str(db_path)]
    if message.startswith("kfuzz: error: --device cuda"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    res = kfuzz(*argv)
    assert res.code == 2
    assert res.err.startswith(message), res.err
    assert res.err.count("\n") == 1, res.err
    assert "Traceback" not in res.err


def _user_kernel_module(tmp_path: Path, body: str, name: str) -> str:
    (tmp_path / f"{name}.py").write_text("import torch\n\n" + body)
    sys.path.insert(0, str(tmp_path))
    return name


@pytest.mark.parametrize(
    "body, message",
    [
        ("def k(x, weight, *, eps):\n    return x.float()\n",
         "kfuzz: error: kernel '{m}:k' returned output 'y' as torch.float32"),
        ("def k(x, weight, *, eps):\n    return x.reshape(-1).clone()\n",
         "kfuzz: error: kernel '{m}:k' returned output 'y' as torch."),
        ("def k(x, weight, *, eps):\n    return {'z': x}\n",
         "kfuzz: error: kernel '{m}:k' returned outputs ['z']; target 'ops.rmsnorm' "
         "expects ['y']"),
        ("def k(x, weight, *, eps):\n    return 3\n",
         "kfuzz: error: kernel '{m}:k' returned int; target 'ops.rmsnorm' expects 1 "
         "tensor(s) named y"),
    ],
    ids=["dtype", "shape", "names", "not-a-tensor"],
)
def test_user_kernel_breaking_contract_is_one_line_exit_2(kfuzz, db_path, tmp_path, body, message):
    module = _user_kernel_module(tmp_path, body, "userkern_" + str(abs(hash(body))))
    res = kfuzz("run", "ops.rmsnorm", "--kernel", f"{module}:k", "--max-examples", "5",
                "--db", db_path)
    assert res.code == 2
    assert res.err.startswith(message.format(m=module)), res.err
    assert res.err.count("\n") == 1


def test_user_kernel_by_file_path_is_fuzzed_and_stored_under_its_reference(kfuzz, db_path, tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "import torch\n\n"
        "def rmsnorm(x, weight, *, eps):\n"
        "    # drops eps and computes in the input dtype\n"
        "    return x * torch.rsqrt((x * x).mean(-1, keepdim=True)) * weight\n"
    )
    ref = f"{path}:rmsnorm"
    res = kfuzz("run", "ops.rmsnorm", "--kernel", ref, "--max-examples", "30", "--seed", "1",
                "--db", db_path, "--json")
    assert res.code == 1, res.err
    assert {f["kernel"] for f in res.json()["findings"]} == {ref}
    assert kfuzz("replay", "--db", db_path).code == 1


def _subparser(parser: argparse.ArgumentParser, command: list[str]) -> argparse.ArgumentParser:
    for word in command:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[word]
    return parser


def _words(text: str) -> str:
    return " ".join(text.split())


def test_every_command_has_help(kfuzz):
    parser = build_parser()
    commands = [["targets"], ["run"], ["replay"], ["corpus"], ["corpus", "list"],
                ["corpus", "show"], ["corpus", "export"], ["corpus", "rm"], ["corpus", "merge"],
                ["report"]]
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {c[0] for c in commands}
    # Every command and subcommand has a one-line summary in its parent's listing.
    listed = {tuple(c[:-1]) + (a.dest,): a.help for c in commands
              for a in getattr(next((x for x in _subparser(parser, c[:-1])._actions
                                     if isinstance(x, argparse._SubParsersAction)), None),
                               "_choices_actions", [])}
    assert {c: h for c, h in listed.items() if not h} == {}
    assert set(listed) == {tuple(c) for c in commands}
    for command in commands:
        res = kfuzz(*command, "--help")
        assert res.code == 0
        assert res.out.startswith("usage: kfuzz " + " ".join(command)), res.out
        p = _subparser(parser, command)
        assert p.description and _words(p.description) in _words(res.out), command
        # Every option and argument is explained, and its explanation is printed.
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = "/".join(action.option_strings) or action.dest
            assert action.help, f"kfuzz {' '.join(command)} {name} has no help"
            assert _words(action.help) in _words(res.out), f"{name}: help not shown"
    top = kfuzz("--help")
    assert "exit status: 0 nothing over threshold" in top.out


def test_corpus_show_and_export_reproducer_runs_standalone(kfuzz, db_path, tmp_path):
    run = kfuzz("run", "ops.softmax", "--kernel", "eager_lowp", "--compare", "exact",
                "--max-examples", "30", "--seed", "3", "--db", db_path, "--json")
    assert run.code == 1
    fid = run.json()["findings"][0]["id"]
    show = kfuzz("corpus", "show", fid[:8], "--db", db_path)
    assert show.code == 0
    assert "Mismatched elements:" in show.out and fid in show.out
    script = tmp_path / "repro.py"
    assert kfuzz("corpus", "export", fid, "--db", db_path, "-o", script).code == 0
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "output y: FAIL exact" in proc.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "kfuzz"
    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.startswith("kfuzz ")


def test_pinned_fields_hold_through_search_and_shrink(kfuzz, db_path):
    run = kfuzz("run", "ops.rmsnorm", "--pin", "shape=[4,512]", "--pin", "dtype=float16",
                "--max-examples", "30", "--seed", "2", "--db", db_path, "--json")
    assert run.code == 1
    for finding in run.json()["findings"]:
        assert finding["case"]["shape"] == [4, 512] and finding["case"]["dtype"] == "float16"
    bad = kfuzz("run", "ops.rmsnorm", "--pin", "shap=[4,512]", "--max-examples", "3",
                "--db", db_path)
    assert bad.code == 2
    assert bad.err.startswith("kfuzz: error: --pin shap: cases of 'ops.rmsnorm' have no field "
                              "'shap'; fields: dtype, eps, ")
    assert bad.err.count("\n") == 1 and "shape, " in bad.err


def test_targets_named_are_the_only_ones_listed(kfuzz):
    res = kfuzz("targets", "--json", "ops.softmax", "dsv4.q_norm_rope")
    assert res.code == 0
    assert [t["name"] for t in res.json()["targets"]] == ["ops.softmax", "dsv4.q_norm_rope"]
    names = kfuzz("targets", "--names", "ops.rope")
    assert names.out == "ops.rope\n"
    bad = kfuzz("targets", "ops.rmsnrm")
    assert bad.code == 2
    assert bad.err.startswith("kfuzz: error: no target 'ops.rmsnrm'")
    assert "did you mean 'ops.rmsnorm'?" in bad.err and bad.err.count("\n") == 1


@pytest.mark.slow
def test_output_shape_wrong_only_at_some_sizes_is_a_shrunk_contract_finding(kfuzz, db_path,
                                                                            tmp_path):
    kernel = tmp_path / "kern" / "k.py"
    kernel.parent.mkdir()
    kernel.write_text(
        "import torch\n\n"
        "def rms(x, weight, *, eps):\n"
        "    y = (x.float() * torch.rsqrt((x.float() ** 2).mean(-1, keepdim=True) + eps)\n"
        "         * weight.float()).to(x.dtype)\n"
        "    return y[:, :-1] if x.shape[-1] > 100 else y  # wrong only on wide rows\n")
    run = kfuzz("run", "ops.rmsnorm", "--kernel", f"{kernel}:rms", "--exclude", "overflow",
                "--max-examples", "100", "--seed", "1", "--db", db_path, "--json")
    assert run.code == 1, run.err
    contract = [f for f in run.json()["findings"] if f["failure"] == "contract"]
    assert contract and contract[0]["kind"] == "shrunk"
    assert contract[0]["case"]["shape"] == [1, 101]  # the narrowest row that breaks it
    replay = kfuzz("replay", "--db", db_path)
    assert replay.code == 1 and "still failing" in replay.out

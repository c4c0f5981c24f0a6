"""Chains of kernels: declaration, stage choices, blame in failure buckets, attribution."""

from __future__ import annotations

import kfuzz
import pytest
import torch
from kfuzz.judge.comparator import Comparator

TIGHT = Comparator(mode="allclose", atol=0.0, rtol=1e-3)


def scale(factor):
    def kernel(x):
        return x * factor
    return kernel


def copy(x):
    return x.clone()


def two_stage(name, first, second):
    return kfuzz.chain(
        name, inputs={"x": kfuzz.tensor("rows cols", dtypes=["float32"], values=["normal"])},
        stages={"a": kfuzz.stage(kernels={"k": scale(first)}, golden={"g": copy},
                                 comparator=TIGHT),
                "b": kfuzz.stage(kernels={"k": scale(second)}, golden={"g": copy},
                                 comparator=TIGHT)},
        wiring=lambda stages, x: stages.b(x=stages.a(x=x)),
        comparator=TIGHT, dims={"rows": (1, 4), "cols": (1, 16)})


CASE = {"rows": 2, "cols": 8, "dtype": "float32", "x": {"kind": "normal", "scale": 1.0},
        "seed": 0}


def attribute(target, case=CASE):
    from kfuzz.execute.executor import Job

    return target.attribute(Job(target.name, target.default_kernel, target.default_oracle, case))


def test_one_faulty_stage_is_blamed_and_shrinking_keeps_it():
    target = two_stage("test.chain_one", 1.0, 1.01)
    outcome = kfuzz.run_case(target, CASE, kernel=None)
    assert outcome.buckets() == {"y:mismatch:wrong@b"} or all(
        b.endswith("@b") for b in outcome.buckets())
    result = kfuzz.fuzz(target, kernel=None, max_examples=60, seed=0)
    shrunk = [f for f in result.findings if f.kind == "shrunk"]
    assert shrunk and all(f.signature.endswith("@b") for f in shrunk)
    att = shrunk[0].attribution
    assert att["verdict"] == "stage" and att["blamed"] == ["b"]
    assert att["stages"]["b"]["share"] == 1.0 and att["stages"]["a"]["share"] == 0.0
    assert not att["stages"]["b"]["local"]["passed"] and att["stages"]["a"]["local"]["passed"]


def test_two_independent_faults_are_no_single_stage_with_both_shares():
    att = attribute(two_stage("test.chain_two", 1.01, 1.01))
    assert att["verdict"] == "several" and att["blamed"] == ["a", "b"]
    assert not att["stages"]["a"]["fixes"] and not att["stages"]["b"]["fixes"]
    assert att["stages"]["a"]["share"] == pytest.approx(0.5, abs=0.2)
    assert att["stages"]["b"]["share"] == pytest.approx(0.5, abs=0.2)
    assert "no single stage" in att["summary"]


def test_compounding_error_is_not_blamed_on_one_stage():
    # Each stage is off by 0.6x what its comparator allows; together 1.2x at the output.
    target = two_stage("test.chain_compound", 1.0006, 1.0006)
    outcome = kfuzz.run_case(target, CASE, kernel=None)
    assert outcome.failed and all(b.endswith("@no_local_fault") for b in outcome.buckets())
    att = attribute(target)
    assert att["verdict"] == "compound" and att["blamed"] == []
    assert all(s["local"]["passed"] and not s["alone_fails"] for s in att["stages"].values())
    assert "compound" in att["summary"]


def test_attribution_costs_at_most_two_chain_runs_per_stage():
    calls = {"n": 0}

    def counted(x):
        calls["n"] += 1
        return x.clone()

    stages = {name: kfuzz.stage(kernels={"k": scale(1.01 if name == "s1" else 1.0)},
                                golden={"g": counted}, comparator=TIGHT)
              for name in ("s0", "s1", "s2")}
    target = kfuzz.chain(
        "test.chain_cost",
        inputs={"x": kfuzz.tensor("rows cols", dtypes=["float32"], values=["normal"])},
        stages=stages, wiring=lambda stages, x: stages.s2(x=stages.s1(x=stages.s0(x=x))),
        comparator=TIGHT)
    att = attribute(target)
    n = len(stages)
    # The traced golden run (the reference the comparison needs) plus at most 2 per stage.
    assert att["chain_runs"] - 1 <= 2 * n
    # Golden calls: 3 in the traced run, then each swap run calls the goldens it uses:
    assert calls["n"] == 3 + 3 * 1 + 3 * 2  # only-one-golden runs: 1 each; only-one-kernel: 2
    assert att["blamed"] == ["s1"]


def test_stage_choice_by_name_and_bad_choice():
    target = two_stage("test.chain_names", 1.0, 1.01)
    assert "b=g" in target.kernels and "b=nope" not in target.kernels
    outcome = kfuzz.run_case(target, CASE, kernel="b=g")
    assert not outcome.failed
    with pytest.raises(kfuzz.KfuzzError, match="b=nope"):
        kfuzz.run_case(target, CASE, kernel="b=nope")


def test_user_three_stage_chain_from_docs():
    # The example of docs/python-api.md, "Chains".
    def rmsnorm(x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    def rmsnorm_fp64(x):
        return rmsnorm(x.double()).float()

    def linear_bf16(x, w):
        return (x.bfloat16() @ w.bfloat16()).float()

    def linear_fp64(x, w):
        return (x.double() @ w.double()).float()

    def softmax_fp64(x):
        return torch.softmax(x.double(), -1).float()

    loose = kfuzz.Comparator(mode="allclose", atol=1e-4, rtol=1e-3)
    mlp = kfuzz.chain(
        "demo.norm_linear_softmax",
        inputs={"x": kfuzz.tensor("rows cols", dtypes=["float32"], values=["normal"]),
                "w": kfuzz.tensor("cols cols", dtypes=["float32"], values=["normal"])},
        stages={"norm": kfuzz.stage(kernels=rmsnorm, golden=rmsnorm_fp64, comparator=loose),
                "linear": kfuzz.stage(kernels=linear_bf16, golden=linear_fp64, comparator=loose),
                "softmax": kfuzz.stage(kernels=lambda x: torch.softmax(x, -1),
                                       golden=softmax_fp64, comparator=loose)},
        wiring=lambda s, x, w: s.softmax(x=s.linear(x=s.norm(x=x), w=w)),
        comparator=loose, dims={"rows": (1, 8), "cols": (2, 64)})
    with pytest.raises(AssertionError, match="attribution: blame linear"):
        kfuzz.check(mlp, kernel=None, max_examples=60, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_dsv4_decode_blames_the_query_stage(request, db_path, seed):
    cli = request.getfixturevalue("kfuzz")
    from kfuzz.store.corpus import CorpusStore

    assert cli("run", "dsv4.decode", "--budget", "60", "--seed", str(seed),
               "--db", str(db_path)).code == 1
    rows = [r for r in CorpusStore(db_path, read_only=True).findings() if r["kind"] == "shrunk"]
    assert rows
    for row in rows:
        assert row["signature"].startswith("out:")
        assert '"blamed": ["q_norm_rope"]' in row["attribution"]


@pytest.mark.slow
def test_dsv4_decode_blames_the_attention_golden(request, db_path):
    cli = request.getfixturevalue("kfuzz")
    from kfuzz.store.corpus import CorpusStore

    got = cli("run", "dsv4.decode", "--kernel", "q_norm_rope=fp64", "--oracle",
              "sparse_attn=full_fp32", "--budget", "60", "--seed", "0", "--db", str(db_path))
    assert got.code == 1 and "golden full_fp32 disagree" in got.out
    rows = [r for r in CorpusStore(db_path, read_only=True).findings() if r["kind"] == "shrunk"]
    assert rows and all('"blamed": ["sparse_attn"]' in r["attribution"] for r in rows)


PLUGIN_CHAIN = '''import kfuzz
import torch

loose = kfuzz.Comparator(mode="allclose", atol=1e-4, rtol=1e-3)


def scale_bf16(x):
    return x.bfloat16().float() * 1.01


def scale(x):
    return x * 1.01


def exp_fp64(x):
    return torch.exp(x.double()).float()


kfuzz.chain(
    "mine.scale_exp",
    inputs={"x": kfuzz.tensor("rows cols", dtypes=["float32"], values=["normal"])},
    stages={"scale": kfuzz.stage(kernels={"bf16": scale_bf16, "fp32": scale}, golden=scale,
                                 comparator=loose),
            "exp": kfuzz.stage(kernels=torch.exp, golden=exp_fp64, comparator=loose)},
    wiring=lambda s, x: s.exp(x=s.scale(x=x)),
    comparator=loose, dims={"rows": (1, 8), "cols": (1, 64)})
'''


def test_a_chain_declared_in_a_plugin_runs_blames_and_replays(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from kfuzz.store.corpus import CorpusStore

    mine, other = tmp_path / "mine", tmp_path / "other"
    mine.mkdir()
    other.mkdir()
    (mine / "chainplugin.py").write_text(PLUGIN_CHAIN)
    db = tmp_path / "corpus.db"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def kfuzz_in(cwd, *argv):
        return subprocess.run([sys.executable, "-m", "kfuzz.cli", *map(str, argv)], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=300)

    listed = kfuzz_in(mine, "targets", "mine.scale_exp", "--plugin", "chainplugin.py")
    assert listed.returncode == 0 and "scale=bf16" in listed.stdout, listed.stdout + listed.stderr
    run = kfuzz_in(mine, "run", "mine.scale_exp", "--plugin", "chainplugin.py", "--max-examples",
                   "40", "--seed", "0", "--shrink-seconds", "5", "--db", db)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "blame scale" in run.stdout
    rows = [r for r in CorpusStore(db, read_only=True).findings() if r["kind"] == "shrunk"]
    assert rows and all(json.loads(r["attribution"])["blamed"] == ["scale"] for r in rows)
    # The stored finding replays from elsewhere with no --plugin; the FP32 stage kernel fixes it.
    assert kfuzz_in(other, "replay", "--db", db).returncode == 1
    fixed = kfuzz_in(other, "replay", "--db", db, "--kernel", "scale=fp32", "--json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert {r["verdict"] for r in json.loads(fixed.stdout)["replays"]} == {"fixed"}

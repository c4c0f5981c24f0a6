"""--ray: shards as Ray tasks on a local instance, this process the single corpus writer."""

from __future__ import annotations

import os
import sqlite3
import sys
import textwrap

import pytest
from kfuzz.errors import KfuzzError
from kfuzz.run.parallel import shard
from kfuzz.search.campaign import CampaignConfig, run_campaign
from kfuzz.store.corpus import CorpusStore
from kfuzz.targets import registry

# Long enough that shrinking always completes, so that a loaded machine cannot end a shrink
# early in one run and not in the other.
SHRINK_SECONDS = 600.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_instance():
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not importable (pip install -e '.[ray]')")
    environ = dict(os.environ)
    # "local": a fresh instance of our own, never a cluster someone else started here.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 2**20)
    yield ray
    ray.shutdown()
    # ray.init sets variables (PYTHONBREAKPOINT among them) that would leak into later tests.
    for name in set(os.environ) - set(environ):
        del os.environ[name]


def _in_process(configs, workers, db_path):
    """The shards `run_on_ray` would run, one after another here, recorded as they report."""
    results = []
    with CorpusStore(db_path) as store:
        run_id = store.start_run(argv=[], profile="dev", seed=None, targets=[])
        for config in shard(configs, workers):
            results.append(run_campaign(
                config, on_finding=lambda f: store.record_finding(f, run_id=run_id)))
    return results


def _on_ray(configs, workers, db_path, plugins=()):
    from kfuzz.run.campaigns import RunContext
    from kfuzz.run.executors import ExecutorSpec
    from kfuzz.run.ray import run_on_ray

    with CorpusStore(db_path) as store:
        run_id = store.start_run(argv=[], profile="dev", seed=None, targets=[])
        context = RunContext(executor=ExecutorSpec(plugins=tuple(plugins)), workers=workers,
                             store=store, run_id=run_id)
        return [run.result for run in run_on_ray(configs, context)]


def _by_shard(results):
    return {(r.target, r.seed): [(f.kind, f.fingerprint) for f in r.findings] for r in results}


def _corpus(db_path):
    # By signature, not fingerprint: two shards that find one bug merge into one row, whose id
    # is the case that arrived first, and Ray's shards arrive in either order.
    conn = sqlite3.connect(db_path)
    try:
        return sorted(conn.execute("select kind, signature, times_seen from findings"))
    finally:
        conn.close()


def test_ray_finds_what_in_process_finds_and_stores_it_once(ray_instance, tmp_path):
    configs = [CampaignConfig(target="ops.rmsnorm", comparator={"mode": "exact"}, max_examples=40,
                              seed=4, shrink_seconds=SHRINK_SECONDS)]
    expected = _in_process(configs, 2, tmp_path / "here.db")
    results = _on_ray(configs, 2, tmp_path / "ray.db")
    assert _by_shard(results) == _by_shard(expected)
    assert any(f.kind == "shrunk" for r in results for f in r.findings)
    assert sorted(r.examples for r in results) == [20, 20]
    # Same rows and the same sighting counts: each finding written once, by the driver.
    assert _corpus(tmp_path / "ray.db") == _corpus(tmp_path / "here.db")


PLUGIN = textwrap.dedent('''
    import torch
    from hypothesis import strategies as st

    from kfuzz.judge.comparator import Comparator
    from kfuzz.cases.materialise import values
    from kfuzz.targets.registry import OutputSpec, Target, Variant, register
    import raytest_kernels  # found only through the driver's sys.path

    register(Target(
        name="raytest.double",
        doc="2x, with a low-precision kernel",
        signature="fn(x) -> y",
        cases=lambda max_numel: st.fixed_dictionaries(
            {"n": st.integers(1, 64), "seed": st.integers(0, 2**32 - 1)}),
        inputs=lambda case, gen: {"x": values(gen, [case["n"]], torch.float32,
                                              {"kind": "normal", "scale": 1.0})},
        inputs_doc={"x": "float32 vector of n normal values"},
        expect=lambda case: {"y": OutputSpec((case["n"],), torch.float32)},
        kernels={"lowp": Variant("lowp", raytest_kernels.double_lowp)},
        oracles={"ref": Variant("ref", raytest_kernels.double)},
        comparators={"y": Comparator(mode="exact")},
        default_kernel="lowp",
        default_oracle="ref",
    ))
''')

KERNELS = textwrap.dedent('''
    import torch

    def double(x):
        return x * 2

    def double_lowp(x):
        return (x.to(torch.bfloat16) * 2).to(x.dtype)
''')


def test_tasks_load_plugins_and_see_the_drivers_sys_path(ray_instance, tmp_path, monkeypatch):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "raytest_kernels.py").write_text(KERNELS)
    plugin = tmp_path / "raytest_plugin.py"
    plugin.write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    # The plugin's target lives only as long as this test: a copy of the registry is restored.
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry.all_targets()))
    monkeypatch.setattr(registry, "_PLUGINS", dict(registry._PLUGINS))
    registry.load_plugin(str(plugin))
    configs = [CampaignConfig(target="raytest.double", max_examples=30, seed=0,
                              shrink_seconds=SHRINK_SECONDS)]
    expected = _in_process(configs, 1, tmp_path / "here.db")
    results = _on_ray(configs, 1, tmp_path / "ray.db", plugins=[str(plugin)])
    assert _by_shard(results) == _by_shard(expected)
    assert results[0].findings, "the bf16 kernel should fail exact comparison"


def test_cli_ray_matches_the_sequential_run(ray_instance, kfuzz, tmp_path):
    # Two targets on two workers: no sharding, so each task runs what the sequential run ran.
    common = ["run", "ops.rmsnorm", "ops.softmax", "--max-examples", "30", "--compare", "exact",
              "--seed", "3", "--shrink-seconds", str(SHRINK_SECONDS), "--json"]
    here = kfuzz(*common, "--db", tmp_path / "here.db")
    there = kfuzz(*common, "--ray", "--workers", "2", "--db", tmp_path / "ray.db")
    assert there.code == here.code == 1, there.err

    def found(res):
        return {c["target"]: c["findings"] for c in res.json()["campaigns"]}

    assert found(there) == found(here)
    assert _corpus(tmp_path / "ray.db") == _corpus(tmp_path / "here.db")
    conn = sqlite3.connect(tmp_path / "ray.db")
    assert conn.execute("select status, findings from runs").fetchone() == \
        ("done", len(there.json()["findings"]))
    conn.close()


def test_cuda_on_a_cluster_without_gpus(ray_instance, kfuzz, db_path):
    if ray_instance.cluster_resources().get("GPU", 0):
        pytest.skip("this Ray instance has GPUs")
    res = kfuzz("run", "ops.rmsnorm", "--ray", "--device", "cuda", "--db", db_path)
    assert res.code == 2
    assert res.err.startswith("kfuzz: error: --device cuda: the Ray cluster has no GPU ")
    assert res.err.count("\n") == 1


def test_a_configuration_error_in_a_task_is_raised_as_is(ray_instance, tmp_path):
    # The pin names a field rmsnorm cases lack: the task raises a KfuzzError, not a Ray one.
    configs = [CampaignConfig(target="ops.rmsnorm", max_examples=5, seed=0, pins={"nope": 1})]
    with pytest.raises(KfuzzError) as info:
        _on_ray(configs, 1, tmp_path / "ray.db")
    assert type(info.value) is KfuzzError
    assert str(info.value).startswith("--pin nope: cases of 'ops.rmsnorm' have no field 'nope'")


def test_missing_ray_is_a_one_line_error(kfuzz, db_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    res = kfuzz("run", "ops.rmsnorm", "--ray", "--db", db_path)
    assert res.code == 2
    assert res.err == "kfuzz: error: --ray needs the ray extra: pip install -e '.[ray]'\n"
    assert not db_path.exists()  # refused before the corpus is touched

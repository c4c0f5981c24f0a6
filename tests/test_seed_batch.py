"""Copies of a case that differ only in their seed, built together (kfuzz.cases.materialise.batch):
the same bits as each copy built alone, for every built-in target."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from kfuzz.cases.materialise import generator_for, stamp, values
from kfuzz.cases.materialise.batch import FIELD_MAX, SeedBatch
from kfuzz.execute.executor import InProcessExecutor, Job, materialise_case, run_case, seed_copies
from kfuzz.search.batch import batch_seeds
from kfuzz.search.drawn import campaign_cases
from kfuzz.targets import registry

NORMAL = {"kind": "normal", "scale": 1.0}
RMSNORM = stamp({"shape": [3, 8], "dtype": "bfloat16", "x": NORMAL, "eps": 1e-6, "seed": 11})


def _bits(t: torch.Tensor) -> torch.Tensor:
    t = t.contiguous()
    return t if t.dtype is torch.bool else t.view(torch.uint8)


def _same_inputs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        and torch.equal(_bits(a[k]), _bits(b[k])) for k in a)


def _jobs(target: str, cases: list[dict], device: str = "cpu") -> list[Job]:
    t = registry.get(target)
    return [Job(target, t.default_kernel, t.default_oracle, c, device=device) for c in cases]


@pytest.mark.parametrize("name", registry.names())
def test_each_copy_builds_the_bits_it_builds_alone(name: str) -> None:
    target = registry.get(name)
    built = []

    # Regimes, index layouts, coordinates-free cases of every size the search draws (up to
    # 64K elements): each copy of a batch of 4, with the batch and alone.
    @settings(max_examples=12, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(campaign_cases(target, min(target.max_numel, 1 << 16), {}, ()))
    def check(case: dict) -> None:
        jobs = _jobs(name, batch_seeds(4, case))
        copies = seed_copies(jobs)
        assert all(c is not None for c in copies)
        for job, copy in zip(jobs, copies, strict=True):
            alone, _ = materialise_case(target, job.case)
            together, _ = materialise_case(target, job.case, "cpu", copy)
            assert _same_inputs(alone, together), job.case
        built.append(len(jobs))

    check()
    assert built


def test_copies_with_coordinates_build_their_own_bits() -> None:
    case = {**RMSNORM, "materialise": 3, "coords": {"x": {"0": [[0, 2, 5], 0]}}}
    jobs = _jobs("ops.rmsnorm", batch_seeds(3, case))
    target = registry.get("ops.rmsnorm")
    for job, copy in zip(jobs, seed_copies(jobs), strict=True):
        assert _same_inputs(materialise_case(target, job.case)[0],
                            materialise_case(target, job.case, "cpu", copy)[0])


def test_seed_copies_groups_consecutive_jobs_that_differ_only_in_seed() -> None:
    first = batch_seeds(3, RMSNORM)
    other = batch_seeds(2, {**RMSNORM, "eps": 1e-5})
    jobs = _jobs("ops.rmsnorm", first + other + [RMSNORM])
    copies = seed_copies(jobs)
    assert [c.index if c else None for c in copies] == [0, 1, 2, 0, 1, None]
    assert copies[0].batch is copies[2].batch and copies[3].batch is not copies[0].batch
    assert [c.seed for c in copies[:3]] == [c["seed"] for c in first]
    # Not on another device, not across kernels.
    assert seed_copies(_jobs("ops.rmsnorm", first, device="cuda")) == [None] * 3
    mixed = _jobs("ops.rmsnorm", first[:2])
    other_kernel = next(k for k in registry.get("ops.rmsnorm").kernels if k != mixed[0].kernel)
    mixed[1] = Job("ops.rmsnorm", other_kernel, mixed[0].oracle, first[1])
    assert seed_copies(mixed) == [None, None]


def test_a_copy_of_another_seed_is_ignored() -> None:
    copy = SeedBatch([5, 6]).copy(1)
    gen = generator_for({**RMSNORM, "seed": 7}, "cpu", copy)
    alone = generator_for({**RMSNORM, "seed": 7})
    x = values(gen, [4, 8], torch.float32, NORMAL, name="x")
    assert torch.equal(x, values(alone, [4, 8], torch.float32, NORMAL, name="x"))


def test_large_fields_are_built_by_each_copy_alone() -> None:
    batch = SeedBatch([1, 2, 3])
    assert batch.field(0, "x", 0, (FIELD_MAX + 1,), None) is None
    assert batch.field(0, "x", 0, (FIELD_MAX,), None) is not None


def test_each_copy_gets_its_own_memory() -> None:
    batch = SeedBatch([1, 2])
    a = batch.field(0, "x", 0, (16,), None)
    b = batch.field(1, "x", 0, (16,), None)
    first = a.normal(0)
    first.fill_(0.0)  # a target may update what it drew in place
    again = a.normal(0)
    assert not torch.equal(again, first) and again.data_ptr() != first.data_ptr()
    assert not torch.equal(b.normal(0), again)  # another seed, other values


def test_the_executor_verdicts_are_those_of_cases_run_alone() -> None:
    jobs = _jobs("ops.rmsnorm", batch_seeds(6, RMSNORM))
    executor = InProcessExecutor()
    together = executor.evaluate(jobs)
    alone = [run_case(*executor.resolve(job), job) for job in jobs]
    assert [o.status for o in together] == [o.status for o in alone]
    assert [{k: m.worst_over_allowed for k, m in o.outputs.items()} for o in together] == [
        {k: m.worst_over_allowed for k, m in o.outputs.items()} for o in alone]
    assert all(o.outputs for o in together)


def test_a_batch_asks_the_target_for_its_outputs_once() -> None:
    jobs = _jobs("ops.rmsnorm", batch_seeds(5, RMSNORM))
    target, kernel, oracle = InProcessExecutor().resolve(jobs[0])
    asked = []
    target = dataclasses.replace(
        target, expect=lambda case: asked.append(case) or registry.get("ops.rmsnorm").expect(case))
    copies = seed_copies(jobs)
    outcomes = [run_case(target, kernel, oracle, job, copy)
                for job, copy in zip(jobs, copies, strict=True)]
    assert len(asked) == 1 and all(o.outputs for o in outcomes)
    run_case(target, kernel, oracle, jobs[0])  # alone: asked again
    assert len(asked) == 2

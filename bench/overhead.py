"""Overhead: kfuzz's throughput against the loop a user would write instead, and against a
loop over kfuzz's own executor.

Work per case: `ops.rmsnorm`, kernel `eager_fp32` (FP32 upcast, one rounding), oracle fp64,
BF16 inputs, with the shape and the value distribution pinned so that the work per case is set.
Three shapes, as the throughput issue names them: [1, 8] (small), [24, 1024] (medium),
[64, 3072] (large).

1. kfuzz: `run_campaign` for N cases in the default profile (batch chosen while running,
   unless a fixed batch is given); cases/s = cases / wall time of the whole campaign
   (Hypothesis included).
2. plain loop (the honest baseline): what a user writes without kfuzz: per case seed, inputs
   from a `torch.Generator` (`torch.randn(rows, cols, generator=gen)`, float32 normals,
   torch's default, rounded to BF16), the kernel, a float64 oracle, and a count of elements
   outside `atol + rtol * |expected|` (torch's BF16 tolerances). Beside it, the same loop
   drawing its normals in float64 (several times dearer per draw), labelled as such.
3. executor loop: the very jobs kfuzz ran, in order, through `kfuzz.execute.executor.run_case`
   (materialise, kernel, oracle, compare): what kfuzz's search costs on top of its executor.

The four alternate in one process, 5 runs each; each ratio is taken per run and reported as
the median over runs. The eager_fp32 kernel passes every case, so nothing is shrunk. Then the
engine's own cost, with no kernel work: a bare @given test, @given over the case strategy, and
the campaign with an executor that returns a stored outcome at once, profiled with cProfile.

With --profile, one default campaign per shape also runs under cProfile: the search's share of
its time, and run_case's split into building the inputs, kernel, oracle, compare and the rest.

    python -m bench.overhead [--quick] [--runs 5] [--batches auto,1,16] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import pstats
import time
from collections.abc import Sequence
from typing import Any

import torch
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from kfuzz.cases import strategies as fst
from kfuzz.cases.materialise import VERSION_KEY, generator_for, stamp
from kfuzz.execute.executor import InProcessExecutor, Job, Outcome
from kfuzz.kernels.ops import rmsnorm_fp32
from kfuzz.oracles.ops import rmsnorm_fp64
from kfuzz.search.campaign import CampaignConfig, run_campaign
from kfuzz.targets.registry import get

from bench import common

TARGET, KERNEL, ORACLE = "ops.rmsnorm", "eager_fp32", "fp64"
NORMAL = {"kind": "normal", "scale": 1.0}
SHAPES = {"small": [1, 8], "medium": [24, 1024], "large": [64, 3072]}
# Cases per run: enough that the batch is the one a run on a time budget uses (a run capped at
# N cases keeps at least ~50 Hypothesis examples, so its batch is at most N // 50).
CASES = {"small": 2000, "medium": 1500, "large": 600}
QUICK_CASES = {"small": 200, "medium": 100, "large": 16}
# None: the default (batch chosen while running); fixed sizes beside it.
BATCHES: tuple[int | None, ...] = (None, 1, 16)
QUICK_BATCHES: tuple[int | None, ...] = (None, 1)
# torch.testing's BF16 tolerances: what the plain loop checks against.
RTOL, ATOL = 1.6e-2, 1e-5


class _Canned:
    """An executor that returns one stored outcome for every job: no work at all."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def evaluate(self, jobs: Sequence[Job]) -> list[Outcome]:
        return [self.outcome for _ in jobs]

    def close(self) -> None:
        pass


def _config(shape: list[int], cases: int, batch: int | None, seed: int) -> CampaignConfig:
    return CampaignConfig(target=TARGET, kernel=KERNEL, oracle=ORACLE, max_examples=cases,
                          seed=seed, batch=batch,
                          pins={"shape": shape, "x": NORMAL, "dtype": "bfloat16"})


def kfuzz_run(shape: list[int], cases: int, batch: int | None,
              seed: int) -> tuple[float, list[Job], int, float]:
    """One campaign: (seconds, the jobs it ran, how many failed, mean cases per example)."""
    rec = common.Recording()
    start = time.perf_counter()
    result = run_campaign(_config(shape, cases, batch, seed), executor=rec)
    return time.perf_counter() - start, rec.jobs, rec.failed, result.batch_mean


def plain_loop(shape: list[int], cases: int, seed: int,
               draw: torch.dtype = torch.float32) -> tuple[float, int]:
    """The loop a user writes without kfuzz, for `cases` case seeds: (seconds, bad cases).
    `draw`: the dtype the normals are drawn in before rounding to BF16 (float32, torch's
    default, is what a user writes)."""
    rows, hidden = shape
    bad_cases = 0
    start = time.perf_counter()
    for case_seed in range(seed, seed + cases):
        gen = torch.Generator().manual_seed(case_seed)
        x = torch.randn(rows, hidden, generator=gen, dtype=draw).to(torch.bfloat16)
        w = (1 + 0.125 * torch.randn(hidden, generator=gen, dtype=draw)).to(torch.bfloat16)
        with torch.no_grad():
            got = rmsnorm_fp32(x, w, eps=1e-6).double()
            want = rmsnorm_fp64(x, w, eps=1e-6)
        bad = int(((got - want).abs() > ATOL + RTOL * want.abs()).sum())
        bad_cases += bad > 0
    return time.perf_counter() - start, bad_cases


def measure(shape: list[int], cases: int, batch: int | None, runs: int) -> dict[str, Any]:
    """Alternating kfuzz, plain-loop and executor-loop runs; medians of rates and of per-run
    ratios."""
    kfuzz_rates, plain_rates, hand_rates, plain_ratios, ratios, means = [], [], [], [], [], []
    plain64_rates, plain64_ratios = [], []
    kfuzz_faults, plain_faults = [], []
    failed = 0
    for run in range(runs):
        before = common.page_faults()
        seconds, jobs, bad, mean = kfuzz_run(shape, cases, batch, seed=1000 + run)
        kfuzz_faults.append((common.page_faults() - before) / len(jobs))
        failed += bad
        means.append(mean)
        before = common.page_faults()
        plain, _ = plain_loop(shape, len(jobs), seed=1000 * run)
        plain_faults.append((common.page_faults() - before) / len(jobs))
        plain64, _ = plain_loop(shape, len(jobs), seed=1000 * run, draw=torch.float64)
        loop = common.executor_loop(jobs)
        kfuzz_rates.append(len(jobs) / seconds)
        plain_rates.append(len(jobs) / plain)
        plain64_rates.append(len(jobs) / plain64)
        hand_rates.append(len(jobs) / loop)
        plain_ratios.append(kfuzz_rates[-1] / plain_rates[-1])
        plain64_ratios.append(kfuzz_rates[-1] / plain64_rates[-1])
        ratios.append(kfuzz_rates[-1] / hand_rates[-1])
    k, p, p64, h = (common.median(r) for r in (kfuzz_rates, plain_rates, plain64_rates,
                                               hand_rates))
    return {
        "batch": "auto" if batch is None else batch, "cases": cases, "runs": runs,
        "failed_cases": failed, "mean_batch": round(common.median(means), 2),
        "kfuzz_cases_per_s": round(k, 1), "plain_cases_per_s": round(p, 1),
        "hand_cases_per_s": round(h, 1),
        "plain_draw": "float32",
        "ratio_to_plain_loop": round(common.median(plain_ratios), 3),
        "ratios_to_plain_loop": [round(r, 3) for r in plain_ratios],
        "plain_f64_cases_per_s": round(p64, 1),
        "ratio_to_plain_f64_loop": round(common.median(plain64_ratios), 3),
        "ratio": round(common.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "plain_case_ms": round(1e3 / p, 4),
        "case_ms": round(1e3 / h, 4),
        "overhead_ms_per_case": round(1e3 / k - 1e3 / h, 4),
        "kfuzz_page_faults_per_case": round(common.median(kfuzz_faults), 1),
        "plain_page_faults_per_case": round(common.median(plain_faults), 1),
    }


def _pinned_in_strategy(shape: list[int]) -> st.SearchStrategy[dict[str, Any]]:
    """ops.rmsnorm's case strategy with the pinned fields drawn as constants."""
    return st.fixed_dictionaries({
        "shape": st.just(shape), "dtype": fst.dtypes(("bfloat16", "float16")),
        "x": st.just(NORMAL), "eps": st.sampled_from([1e-6, 1e-5]), "seed": fst.seeds(),
    })


def _bare_given(strategy: Any, examples: int, seed: int) -> float:
    """Seconds per example of a @given test that does nothing, with the campaign's settings."""
    count = [0]

    def body(value: Any) -> None:
        count[0] += 1

    hyp = settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                   suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                   report_multiple_bugs=False, print_blob=False,
                   phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink])
    test = hypothesis_seed(seed)(hyp(given(strategy)(body)))
    start = time.perf_counter()
    test()
    return (time.perf_counter() - start) / max(count[0], 1)


# Functions whose cumulative time the engine profile reports as shares of the whole. (Not
# kfuzz's test function: Hypothesis gives its own wrapper the test's code name and place, so
# the two cannot be told apart in a profile; the own-time shares by package cover kfuzz.)
PROFILE_PARTS = {
    "drawing the case (Hypothesis + fuzz/cases/strategies.py)": "control.py:prep_args_kwargs_from_strategies",
    "Hypothesis mutating earlier examples (runs tests too)": "engine.py:generate_mutations_from",
    "hypothesis.target()": "control.py:target",
}


def engine_costs(shape: list[int], cases: int, batches: Sequence[int], runs: int,
                 top: int = 15) -> dict[str, Any]:
    """The engine's own cost per example, with no kernel work: a bare @given over one integer,
    @given over the target's case strategy, the same with the pinned fields drawn as
    constants, and the campaign with an executor that returns a
    stored outcome at once, per batch size (medians of `runs`); then a cProfile of the
    default (auto-batch) campaign: inclusive shares of named parts (nested, so they overlap),
    exclusive shares of own time by package, and the `top` functions by own time."""
    job = Job(TARGET, KERNEL, ORACLE, {"shape": shape, "dtype": "bfloat16", "x": NORMAL,
                                       "eps": 1e-6, "seed": 0})
    canned = _Canned(InProcessExecutor().evaluate([job])[0])
    target = get(TARGET)
    out: dict[str, Any] = {
        "bare_given_integer_us": round(1e6 * common.median(
            [_bare_given(st.integers(0, 2**32 - 1), cases, r) for r in range(runs)]), 1),
        "given_case_strategy_us": round(1e6 * common.median(
            [_bare_given(target.cases(target.max_numel), cases, r) for r in range(runs)]), 1),
        # What pins applied inside the strategy (st.just) instead of after drawing would cost.
        "given_pinned_strategy_us": round(1e6 * common.median(
            [_bare_given(_pinned_in_strategy(shape), cases, r) for r in range(runs)]), 1),
    }
    per_batch = []
    for batch in batches:
        seconds, means = [], []
        for run in range(runs):
            start = time.perf_counter()
            result = run_campaign(_config(shape, cases, batch, 2000 + run), executor=canned)
            seconds.append((time.perf_counter() - start) / result.examples)
            means.append(result.batch_mean)
        mean = common.median(means)
        per_batch.append({"batch": "auto" if batch is None else batch,
                          "mean_batch": round(mean, 2),
                          "us_per_case": round(common.median(seconds) * 1e6, 1),
                          "us_per_example": round(common.median(seconds) * 1e6 * mean, 1)})
    out["campaign_no_work"] = per_batch
    profile = cProfile.Profile()
    profile.enable()
    result = run_campaign(_config(shape, cases, None, 3000), executor=canned)
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = max(v[3] for v in stats.values())
    rows = []
    for (path, line, name), (_, calls, own, cum, _) in stats.items():
        rows.append({"function": f"{_short_path(path)}:{line}({name})",
                     "calls_per_example": round(calls / result.examples, 2),
                     "cum_us_per_example": round(cum / result.examples * 1e6, 1),
                     "own_us_per_example": round(own / result.examples * 1e6, 1)})
    shares = {}
    for label, needle in PROFILE_PARTS.items():
        file_part, _, func = needle.rpartition(":")
        cums = [v[3] for (path, _, name), v in stats.items()
                if name == func and path.endswith(file_part)]
        shares[label] = round(max(cums, default=0.0) / total, 3)
    own: dict[str, float] = {}
    for (path, _, _), v in stats.items():
        group = ("hypothesis" if "hypothesis/" in path else "kfuzz (fuzz/)" if "/fuzz/" in path
                 else "C functions and builtins" if path == "~" else "other Python (stdlib)")
        own[group] = own.get(group, 0.0) + v[2]
    rows.sort(key=lambda r: -r["own_us_per_example"])
    out.update(profile_us_per_example=round(total / result.examples * 1e6, 1),
               profile_inclusive_shares=shares,
               profile_own_time_shares={g: round(t / total, 3) for g, t in own.items()},
               profile_top_own=rows[:top])
    return out


# The parts of `run_case` the per-shape profile reports, as (file, function): inclusive time.
RUN_CASE_PARTS = {
    "inputs": ("fuzz/execute/executor.py", "materialise_case"),
    "kernel": ("kernels/ops.py", "rmsnorm_fp32"),
    "oracle": ("oracles/ops.py", "rmsnorm_fp64"),
    "compare": ("fuzz/judge/compare.py", "compare"),
}


def case_profile(shape: list[int], cases: int, seed: int = 4000) -> dict[str, Any]:
    """cProfile of one default (auto-batch) campaign at `shape`: per case, the campaign's
    time and the executor's (`run_case`), the search's share above the executor, and the
    inclusive shares of run_case's parts (`RUN_CASE_PARTS`, then the rest). Times
    under the profiler, which adds most to many small Python calls."""
    profile = cProfile.Profile()
    profile.enable()
    result = run_campaign(_config(shape, cases, None, seed), executor=InProcessExecutor())
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]

    def inclusive(file: str, func: str) -> float:
        return max((v[3] for (path, _, name), v in stats.items()
                    if name == func and path.endswith(file)), default=0.0)

    total = max(v[3] for v in stats.values())
    run = inclusive("fuzz/execute/executor.py", "run_case")
    parts = {label: inclusive(*where) for label, where in RUN_CASE_PARTS.items()}
    parts["rest"] = run - sum(parts.values())
    n = max(result.examples, 1)
    return {"shape": shape, "cases": result.examples, "mean_batch": round(result.batch_mean, 2),
            "campaign_ms_per_case": round(total / n * 1e3, 4),
            "run_case_ms_per_case": round(run / n * 1e3, 4),
            "search_share": round(1 - run / total, 3),
            "run_case_shares": {label: round(t / run, 3) for label, t in parts.items()}}


def materialise_costs(runs: int, reps: int = 50) -> dict[str, dict[str, Any]]:
    """Milliseconds to build one ops.rmsnorm case's inputs (x and weight, normal) per shape and
    dtype (BF16, FP32): version 1 (the sequential torch.Generator every case used before),
    version 2 (position-stable, float64 arithmetic), version 4 (FP32 normals in float32),
    version 5 (what the search draws now: BF16 normals looked up whole) and the plain loop's
    float32 `torch.randn` draws rounded to the dtype, alternating, medians of `runs` timings of
    `reps` builds."""
    target = get(TARGET)
    out = {}
    for name, shape in SHAPES.items():
        for dtype in ("bfloat16", "float32"):
            case = {"shape": shape, "dtype": dtype, "x": NORMAL, "eps": 1e-6, "seed": 7}
            builds = {"v1": functools.partial(_inputs, target, case),
                      "v2": functools.partial(_inputs, target, {**case, VERSION_KEY: 2}),
                      "v4": functools.partial(_inputs, target, {**case, VERSION_KEY: 4}),
                      "v5": functools.partial(_inputs, target, stamp(case)),
                      "randn": functools.partial(_randn_inputs, shape, 7, getattr(torch, dtype))}
            times: dict[str, list[float]] = {label: [] for label in builds}
            for _ in range(runs):
                for label, build in builds.items():
                    build()
                    start = time.perf_counter()
                    for _ in range(reps):
                        build()
                    times[label].append((time.perf_counter() - start) / reps * 1e3)
            v1, v2, v4, v5, randn = (common.median(times[k])
                                     for k in ("v1", "v2", "v4", "v5", "randn"))
            out[f"{name} {dtype}"] = {
                "shape": shape, "dtype": dtype, "v1_ms": round(v1, 4), "v2_ms": round(v2, 4),
                "v4_ms": round(v4, 4), "v5_ms": round(v5, 4), "ratio": round(v5 / v1, 2),
                "randn_ms": round(randn, 4), "v5_over_randn": round(v5 / randn, 2)}
    return out


def _inputs(target: Any, case: dict[str, Any]) -> dict[str, torch.Tensor]:
    return target.inputs(case, generator_for(case))


def _randn_inputs(shape: list[int], seed: int,
                  dtype: torch.dtype = torch.bfloat16) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain loop's inputs: float32 normals rounded to `dtype` (no copy for FP32)."""
    rows, hidden = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, hidden, generator=gen).to(dtype)
    return x, (1 + 0.125 * torch.randn(hidden, generator=gen)).to(dtype)


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _batches_arg(text: str) -> tuple[int | None, ...]:
    out: list[int | None] = []
    for part in text.split(","):
        if part.strip() == "auto":
            out.append(None)
            continue
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"{part!r} is not 'auto' or a positive int; give e.g. --batches auto,1,16")
        out.append(value)
    return tuple(out)


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = common.parser(__doc__, "overhead.json")
    p.add_argument("--runs", type=int, default=None, help="runs per measurement (default 5; "
                   "2 with --quick)")
    p.add_argument("--profile", action="store_true",
                   help="also profile one default campaign per shape (cProfile): the search's "
                   "share and the shares of inputs, kernel, oracle, compare in run_case")
    p.add_argument("--batches", type=_batches_arg, default=None, metavar="LIST",
                   help="comma-separated batch sizes to measure, 'auto' for the default "
                   "(default auto,1,16; auto,1 with --quick)")
    args = p.parse_args(argv)
    common.single_thread()
    runs = args.runs or (2 if args.quick else 5)
    cases = QUICK_CASES if args.quick else CASES
    batches = QUICK_BATCHES if args.quick else BATCHES
    if args.batches:
        batches = args.batches
    # Warm-up: imports, the registry, torch's first calls, Hypothesis' first strategy build.
    kfuzz_run(SHAPES["small"], 20, 1, seed=1)
    plain_loop(SHAPES["small"], 20, seed=1)
    plain_loop(SHAPES["small"], 20, seed=1, draw=torch.float64)
    classes = {}
    for name, shape in SHAPES.items():
        rows = [measure(shape, cases[name], b, runs) for b in batches]
        classes[name] = {"shape": shape, "by_batch": rows}
        for r in rows:
            print(f"{name:6} batch {r['batch']!s:4} (mean {r['mean_batch']:5.1f}): kfuzz "
                  f"{r['kfuzz_cases_per_s']:8.1f}/s  plain loop {r['plain_cases_per_s']:8.1f}/s "
                  f"ratio {r['ratio_to_plain_loop']:.3f} (float64 draws: ratio "
                  f"{r['ratio_to_plain_f64_loop']:.3f})  executor loop "
                  f"{r['hand_cases_per_s']:8.1f}/s ratio {r['ratio']:.3f}", flush=True)
    profiles = {name: case_profile(shape, cases[name]) for name, shape in SHAPES.items()
                if args.profile}
    for name, prof in profiles.items():
        print(f"{name:6} profile: {prof['campaign_ms_per_case']} ms per case under cProfile, "
              f"search {prof['search_share']:.0%}, run_case {prof['run_case_shares']}",
              flush=True)
    building = materialise_costs(runs)
    print(f"building inputs, ms (v1 -> v2): {building}", flush=True)
    engine = engine_costs(SHAPES["small"], cases["small"], sorted(
        set(batches) | {None, 1}, key=lambda b: 0 if b is None else b), runs)
    print(f"engine alone: bare @given {engine['bare_given_integer_us']} us, case strategy "
          f"{engine['given_case_strategy_us']} us, campaign {engine['campaign_no_work']}, "
          f"own time {engine['profile_own_time_shares']}")
    common.write(args.out, {
        "mode": "quick" if args.quick else "full", "runs": runs,
        "work": f"{TARGET} kernel {KERNEL} vs {ORACLE}, pins shape, dtype bfloat16 and "
                "x = normal(1)",
        "classes": classes, "engine": engine, "materialise": building,
        **({"profile": profiles} if profiles else {}),
    })


if __name__ == "__main__":
    main()

"""Cases per second of the torch.compile variants against their eager versions, after warm-up.

For each `ops.*` target, draws a fixed list of cases from the target's own strategy (fixed
Hypothesis seed), runs every case once per kernel to warm up (this compiles each shape class
of the compiled variant: compile time is excluded from what follows), then times the same
list several times in one process, eager and compiled alternating case by case (so that load
from other processes falls on both alike), and reports the medians over runs:

- "case" rate: the whole per-case path through the executor (materialise from the seed,
  kernel, float64 oracle, compare), which is what a campaign pays per case;
- "kernel" rate: the kernel call alone on inputs made beforehand.

    python bench/compile_vs_eager.py [--cases 200] [--runs 5] [--threads 1]
                                     [--targets ops.rmsnorm ...] [--out bench/results/compile_vs_eager.md]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from kfuzz.cases.materialise import generator
from kfuzz.execute.executor import InProcessExecutor, Job
from kfuzz.targets.registry import Target, get

PAIRS = (("eager_lowp", "compiled_lowp"), ("eager_fp32", "compiled_fp32"))


def draw_cases(target: Target, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` cases from the target's strategy, the same ones for a given seed."""
    cases: list[dict[str, Any]] = []

    @hypothesis_seed(seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(target.cases(target.max_numel))
    def collect(case: dict[str, Any]) -> None:
        cases.append(case)

    collect()
    return cases[:count]


def interleaved(calls: dict[str, list[Any]]) -> dict[str, float]:
    """Seconds per kernel over its list of calls, timed call by call with the kernels
    alternating (and alternating which goes first), so that load from other processes falls
    on both alike."""
    names = list(calls)
    total = dict.fromkeys(names, 0.0)
    for i in range(len(calls[names[0]])):
        for name in (names if i % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            calls[name][i]()
            total[name] += time.perf_counter() - start
    return total


def bench_target(name: str, count: int, runs: int, seed: int) -> list[dict[str, Any]]:
    target = get(name)
    cases = draw_cases(target, count, seed)
    inputs = [(target.inputs(c, generator(c["seed"])), target.params(c)) for c in cases]
    sizes = sorted(target.case_size(c) for c in cases)
    executor = InProcessExecutor()
    rows = []
    for eager, comp in PAIRS:
        case_calls = {k: [functools.partial(executor.evaluate, [Job(name, k, target.default_oracle, c)])
                          for c in cases] for k in (eager, comp)}
        kernel_calls = {k: [functools.partial(target.kernels[k], **tensors, **params)
                            for tensors, params in inputs] for k in (eager, comp)}
        start = time.perf_counter()
        for calls in case_calls.values():  # warm-up: compiles every shape class
            for call in calls:
                call()
        warmup = time.perf_counter() - start
        case_s: dict[str, list[float]] = {eager: [], comp: []}
        kernel_s: dict[str, list[float]] = {eager: [], comp: []}
        with torch.no_grad():
            for _ in range(runs):
                for k, v in interleaved(case_calls).items():
                    case_s[k].append(v)
                for k, v in interleaved(kernel_calls).items():
                    kernel_s[k].append(v)
        med = {k: statistics.median(v) for k, v in case_s.items()}
        kmed = {k: statistics.median(v) for k, v in kernel_s.items()}
        rows.append({
            "target": name, "eager": eager, "compiled": comp, "cases": len(cases),
            "case_elements": {"median": sizes[len(sizes) // 2], "max": sizes[-1]},
            "shape_classes": target.kernels[comp].fn.compilations,
            "warmup_s": round(warmup, 2),
            "eager_cases_per_s": round(len(cases) / med[eager], 1),
            "compiled_cases_per_s": round(len(cases) / med[comp], 1),
            "case_ratio": round(med[eager] / med[comp], 3),
            "eager_kernel_calls_per_s": round(len(cases) / kmed[eager], 1),
            "compiled_kernel_calls_per_s": round(len(cases) / kmed[comp], 1),
            "kernel_ratio": round(kmed[eager] / kmed[comp], 3),
            "case_seconds": {k: [round(x, 4) for x in v] for k, v in case_s.items()},
            "kernel_seconds": {k: [round(x, 4) for x in v] for k, v in kernel_s.items()},
        })
        print(json.dumps({k: v for k, v in rows[-1].items() if not k.endswith("_seconds")}),
              flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# torch.compile vs eager, cases per second after warm-up",
        "",
        f"{meta['command']}  ",
        f"torch {meta['torch']}, {meta['threads']} threads, {meta['machine']}; "
        f"medians of {meta['runs']} runs; in each run eager and compiled alternate case by case; "
        "ratio = compiled rate / eager rate (1 = as fast; 0.5 = half as fast).",
        "",
        "| target | compiled vs eager | cases (median / max elements) | shape classes | warm-up s "
        "| eager cases/s | compiled cases/s | ratio | eager kernel calls/s "
        "| compiled kernel calls/s | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['compiled']} vs {r['eager']} | {r['cases']} "
            f"({r['case_elements']['median']} / {r['case_elements']['max']}) | "
            f"{r['shape_classes']} | {r['warmup_s']} | {r['eager_cases_per_s']} | "
            f"{r['compiled_cases_per_s']} | {r['case_ratio']} | {r['eager_kernel_calls_per_s']} | "
            f"{r['compiled_kernel_calls_per_s']} | {r['kernel_ratio']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the benchmark and write a markdown table and the raw JSON next to it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", default=["ops.rmsnorm", "ops.softmax", "ops.rope"])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine, more threads mostly "
                        "add noise from oversubscription)")
    parser.add_argument("--out", default="bench/results/compile_vs_eager.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [row for name in args.targets for row in bench_target(name, args.cases, args.runs, args.seed)]
    meta = {"command": "python bench/compile_vs_eager.py " + " ".join(
                f"--{k} {' '.join(v) if isinstance(v, list) else v}" for k, v in vars(args).items()),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "runs": args.runs}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(rows, meta))
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()

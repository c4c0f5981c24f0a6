"""Library overhead: kfuzz fuzzing ONNX Runtime's Softmax against the loop a user writes
around the same InferenceSession.

Work per case: `ops.softmax`, kernel `ort_softmax` (a one-node ONNX Softmax, opset 13, axis
-1, on a cached CPU session with one intra-op and one inter-op thread), oracle fp64, with the
shape, the dtype (float32) and the value distribution (normal(1)) pinned so that the work per
case is set. Three shapes by default: [1, 8], [24, 1024], [64, 3072].

1. kfuzz: `run_campaign` for N cases in the default profile (batch chosen while running);
   cases/s = cases / wall time of the whole campaign (Hypothesis included).
2. plain loop (the baseline): per case seed, `x = torch.randn(rows, cols, generator=gen)`
   (float32, torch's default), `x.numpy()` fed to one cached `onnxruntime.InferenceSession` of
   a one-node Softmax built with onnx.helper (the same session options as kfuzz's), a float64
   softmax in torch as the oracle, and a count of elements outside `atol + rtol * |expected|`
   with the float32 tolerances kfuzz's ops.softmax comparator uses, against the expected
   values rounded to float32.
3. executor loop: the very jobs kfuzz ran, in order, through `kfuzz.execute.executor.run_case`
   (materialise, array conversion, kernel, oracle, compare): what the search costs on top.

The three alternate in one process, `--runs` runs each (torch on one thread); each ratio is
taken per run and reported as the median over runs. `--profile` adds a cProfile of the
executor loop on the largest shape: the functions with the most own time per case.

    python -m bench.library_overhead [--quick] [--runs 5] [--shapes 1x8,24x1024,64x3072]
        [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Sequence
from typing import Any

import torch
from kfuzz.execute.executor import Job
from kfuzz.judge.tolerance import TOLERANCES
from kfuzz.search.campaign import CampaignConfig, run_campaign

from bench import common

TARGET, KERNEL, ORACLE = "ops.softmax", "ort_softmax", "fp64"
NORMAL = {"kind": "normal", "scale": 1.0}
SHAPES = ([1, 8], [24, 1024], [64, 3072])
# Cases per run, by the number of elements of a case (the largest bound at or above it).
# (A run capped at N cases keeps at least ~50 Hypothesis examples, so its batch is at most
# N // 50: these are enough for the batch a run on a time budget uses.)
CASES = ((8, 2000), (24 * 1024, 1500), (None, 600))
QUICK_CASES = ((8, 200), (24 * 1024, 100), (None, 20))
# Goals: kfuzz cases/s over the plain loop's, by shape.
GOALS = {"[24, 1024]": 0.5, "[64, 3072]": 0.8}
TOL = TOLERANCES[torch.float32]


def kfuzz_run(shape: list[int], cases: int, seed: int) -> tuple[float, list[Job], int, float]:
    """One campaign: (seconds, the jobs it ran, how many failed, mean cases per example)."""
    config = CampaignConfig(target=TARGET, kernel=KERNEL, oracle=ORACLE, max_examples=cases,
                            seed=seed, pins={"shape": shape, "dtype": "float32", "x": NORMAL})
    rec = common.Recording()
    start = time.perf_counter()
    result = run_campaign(config, executor=rec)
    return time.perf_counter() - start, rec.jobs, rec.failed, result.batch_mean


def user_session() -> Any:
    """What the plain loop builds once: a one-node Softmax (opset 13, axis -1), FP32, dynamic
    dims, on a CPU session with one intra-op and one inter-op thread."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["X"], ["Y"], axis=-1)], "softmax",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["rows", "cols"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["rows", "cols"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def plain_loop(session: Any, shape: list[int], cases: int, seed: int) -> tuple[float, int]:
    """The loop a user writes without kfuzz, for `cases` case seeds: (seconds, bad cases)."""
    rows, cols = shape
    bad_cases = 0
    start = time.perf_counter()
    for case_seed in range(seed, seed + cases):
        gen = torch.Generator().manual_seed(case_seed)
        x = torch.randn(rows, cols, generator=gen)
        got = torch.from_numpy(session.run(None, {"X": x.numpy()})[0]).double()
        want = torch.softmax(x.double(), dim=-1).float().double()
        bad = int(((got - want).abs() > TOL.atol + TOL.rtol * want.abs()).sum())
        bad_cases += bad > 0
    return time.perf_counter() - start, bad_cases


def cases_for(shape: list[int], table: Sequence[tuple[int | None, int]]) -> int:
    numel = shape[0] * shape[1]
    return next(n for bound, n in table if bound is None or numel <= bound)


def measure(session: Any, shape: list[int], cases: int, runs: int) -> dict[str, Any]:
    """Alternating kfuzz, plain-loop and executor-loop runs; medians of rates and of per-run
    ratios."""
    rates: dict[str, list[float]] = {"kfuzz": [], "plain": [], "executor": []}
    plain_ratios, executor_ratios, means = [], [], []
    failed = plain_failed = 0
    for run in range(runs):
        seconds, jobs, bad, mean = kfuzz_run(shape, cases, seed=1000 + run)
        failed += bad
        means.append(mean)
        plain, plain_bad = plain_loop(session, shape, len(jobs), seed=1000 * run)
        plain_failed += plain_bad
        loop = common.executor_loop(jobs)
        rates["kfuzz"].append(len(jobs) / seconds)
        rates["plain"].append(len(jobs) / plain)
        rates["executor"].append(len(jobs) / loop)
        plain_ratios.append(rates["kfuzz"][-1] / rates["plain"][-1])
        executor_ratios.append(rates["kfuzz"][-1] / rates["executor"][-1])
    k, p, e = (common.median(rates[name]) for name in ("kfuzz", "plain", "executor"))
    return {
        "shape": shape, "cases": cases, "runs": runs, "failed_cases": failed,
        "plain_failed_cases": plain_failed, "mean_batch": round(common.median(means), 2),
        "kfuzz_cases_per_s": round(k, 1), "plain_cases_per_s": round(p, 1),
        "executor_cases_per_s": round(e, 1),
        "ratio_to_plain_loop": round(common.median(plain_ratios), 3),
        "ratios_to_plain_loop": [round(r, 3) for r in plain_ratios],
        "ratio_to_executor_loop": round(common.median(executor_ratios), 3),
        "plain_case_ms": round(1e3 / p, 4), "executor_case_ms": round(1e3 / e, 4),
        "kfuzz_case_ms": round(1e3 / k, 4),
    }


def profile(shape: list[int], cases: int, top: int = 15) -> list[dict[str, Any]]:
    """cProfile of the executor loop over one campaign's jobs: the `top` functions by own
    time, in µs per case."""
    _, jobs, _, _ = kfuzz_run(shape, cases, seed=3000)
    prof = cProfile.Profile()
    prof.enable()
    common.executor_loop(jobs)
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = [{"function": f"{_short_path(path)}:{line}({name})",
             "own_us_per_case": round(own / len(jobs) * 1e6, 1),
             "cum_us_per_case": round(cum / len(jobs) * 1e6, 1)}
            for (path, line, name), (_, _, own, cum, _) in stats.items()]
    return sorted(rows, key=lambda r: -r["own_us_per_case"])[:top]


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _shapes_arg(text: str) -> list[list[int]]:
    shapes = []
    for part in text.split(","):
        dims = part.strip().lower().split("x")
        if len(dims) != 2 or not all(d.isdigit() and int(d) > 0 for d in dims):
            raise argparse.ArgumentTypeError(
                f"{part!r} is not ROWSxCOLS with positive ints; give e.g. --shapes 1x8,24x1024")
        shapes.append([int(d) for d in dims])
    return shapes


def section(doc: dict[str, Any]) -> str:
    """BENCHMARKS.md's section for a result of this script (bench/render.py calls it)."""
    from bench.render import _f, _provenance, _table

    rows = []
    for r in doc["shapes"]:
        goal = GOALS.get(str(r["shape"]))
        status = "-" if goal is None else (
            f">= {goal:g}: " + ("met" if r["ratio_to_plain_loop"] >= goal else "not met"))
        rows.append([str(r["shape"]), _f(r["mean_batch"], 1), _f(r["kfuzz_cases_per_s"], 0),
                     _f(r["plain_cases_per_s"], 0), f"**{_f(r['ratio_to_plain_loop'], 3)}**",
                     ", ".join(_f(x) for x in r["ratios_to_plain_loop"]), status,
                     _f(r["executor_cases_per_s"], 0), _f(r["ratio_to_executor_loop"])])
    prof = doc.get("profile")
    profiled = [] if not prof else [
        "", f"cProfile of the executor loop on {prof['shape']} (µs per case under the "
        "profiler), the functions with the most own time:", "",
        _table(["function", "own µs per case", "cumulative µs per case"],
               [[f"`{r['function']}`", _f(r["own_us_per_case"], 1), _f(r["cum_us_per_case"], 1)]
                for r in prof["top_own"][:10]])]
    return "\n".join([
        "## 1b. Library overhead: kfuzz on ONNX Runtime's Softmax against the loop a user writes",
        "", _provenance(doc, f"medians of {doc['runs']} alternating runs"), "",
        f"Work per case: {doc['work']}. The plain loop is what a user writes instead: per case "
        "seed, `torch.randn(rows, cols, generator=gen)` (float32), `.numpy()` into one cached "
        "`onnxruntime.InferenceSession` of a one-node Softmax (opset 13, axis -1, one intra-op "
        "thread, as kfuzz's), a float64 softmax in torch and a count of elements outside the "
        "float32 tolerances kfuzz's comparator uses. The executor loop runs exactly the cases "
        "the kfuzz campaign ran through `kfuzz.execute.executor.run_case`. Ratio = kfuzz "
        "cases/s / loop cases/s, the median of the per-run ratios.", "",
        _table(["shape", "mean batch", "kfuzz cases/s", "plain loop cases/s",
                "ratio to plain loop", "per-run ratios", "goal", "executor loop cases/s",
                "ratio to executor loop"], rows),
        *profiled,
    ])


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = common.parser(__doc__, "library_overhead.json")
    p.add_argument("--runs", type=int, default=None, help="runs per shape (default 5; 2 with "
                   "--quick)")
    p.add_argument("--shapes", type=_shapes_arg, default=[list(s) for s in SHAPES],
                   metavar="LIST", help="comma-separated ROWSxCOLS (default 1x8,24x1024,64x3072)")
    p.add_argument("--profile", action="store_true",
                   help="also profile the executor loop on the largest shape")
    args = p.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        p.error(f"--runs {args.runs}: give a positive number of runs, e.g. --runs 5")
    common.single_thread()
    runs = args.runs or (2 if args.quick else 5)
    table = QUICK_CASES if args.quick else CASES
    session = user_session()
    # Warm-up: imports, the registry, ORT's sessions, Hypothesis' first strategy build.
    kfuzz_run([1, 8], 20, seed=1)
    plain_loop(session, [1, 8], 20, seed=1)
    results = []
    for shape in args.shapes:
        r = measure(session, shape, cases_for(shape, table), runs)
        results.append(r)
        print(f"{str(shape):12} (mean batch {r['mean_batch']:5.1f}): kfuzz "
              f"{r['kfuzz_cases_per_s']:8.1f}/s  plain loop {r['plain_cases_per_s']:8.1f}/s  "
              f"ratio {r['ratio_to_plain_loop']:.3f} {r['ratios_to_plain_loop']}  executor "
              f"loop {r['executor_cases_per_s']:8.1f}/s", flush=True)
    doc: dict[str, Any] = {
        "mode": "quick" if args.quick else "full", "runs": runs,
        "work": f"{TARGET} kernel {KERNEL} vs {ORACLE}, pins shape, dtype float32 and "
                "x = normal(1)",
        "shapes": results,
    }
    if args.profile:
        largest = max(args.shapes, key=lambda s: s[0] * s[1])
        doc["profile"] = {"shape": largest, "top_own": profile(largest, cases_for(largest, table))}
        for row in doc["profile"]["top_own"]:
            print(f"  {row['own_us_per_case']:9.1f} us own {row['cum_us_per_case']:9.1f} us cum  "
                  f"{row['function']}")
    common.write(args.out, doc)


if __name__ == "__main__":
    main()

"""Render BENCHMARKS.md from the JSON results in bench/results/, so that the tables and the
numbers in the text never drift from what was measured.

    python -m bench.render [--results bench/results] [--out BENCHMARKS.md] [--check]

--check exits 1, writing nothing, when BENCHMARKS.md differs from what the results render to.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from bench.common import RESULTS, run_summary

ROOT = Path(__file__).resolve().parents[1]
# A fault is "rare" in its case space when fewer than this fraction of uniformly drawn cases
# show it (the issue asks kfuzz to be strictly better than uniform sampling on those).
RARE_RATE = 0.05
SECTIONS = ("overhead", "library_overhead", "draws", "smallest", "bug_finding", "detection",
            "plain_share_8", "plain_share_4", "corpus_scale", "workers", "startup")
# The plain-share comparison: one result file per share, N as in --plain-share N.
SHARES = (8, 4)


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _provenance(doc: dict[str, Any], what: str) -> str:
    m = doc["machine"]
    quick = (" **Quick run: a smoke test of the script, not a measurement.**"
             if doc.get("mode") == "quick" else "")
    return (f"Command: `{doc['command']}` ({doc['date']}; {what}).{quick}  \n"
            f"Machine: {m['cpu']}, {m['cores']} cores, {m['os']}; Python {m['python']}, "
            f"torch {m['torch']} ({m['torch_threads']} thread), Hypothesis {m['hypothesis']}; "
            f"load average {', '.join(str(x) for x in m['load_average'])} when the run ended.")


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _by_batch(cls: dict[str, Any], batch: int | str) -> dict[str, Any]:
    return next(r for r in cls["by_batch"] if r["batch"] == batch)


# -- sections ---------------------------------------------------------------------------------

def overhead(doc: dict[str, Any]) -> str:
    """The overhead section."""
    out = ["## 1. Overhead: kfuzz against the loop a user would write", "",
           _provenance(doc, f"medians of {doc['runs']} alternating runs"), "",
           f"Work per case: {doc['work']}. The plain loop is what a user writes instead: per "
           "case seed, inputs from a `torch.Generator` (`torch.randn(rows, cols, "
           "generator=gen)`: float32 normals, torch's default, rounded to BF16), the kernel, a "
           "float64 oracle and a count of elements outside `atol + rtol * |expected|`. The "
           "float64-draw loop is the same loop drawing its normals in float64, which costs "
           "several times more per draw; it is shown for comparison only. The executor loop runs "
           "exactly the cases the kfuzz campaign ran, in the same process, through "
           "`kfuzz.execute.executor.run_case`. Ratio = kfuzz cases/s / loop cases/s, the median of "
           "the per-run ratios. Batch = cases per Hypothesis example: auto (the default) follows "
           "the drawn case's size; mean = cases per example over the campaign. All loops run in "
           "one process, so the plain loop shares kfuzz's allocator settings (glibc keeps freed "
           "memory for the next case, `fuzz/execute/allocator.py`); in a process of its own, with "
           "glibc's defaults, the same loop at [64, 3072] faults in fresh pages and runs slower. "
           "Page faults per case are the medians over runs.", ""]
    rows = []
    for name, cls in doc["classes"].items():
        for r in cls["by_batch"]:
            plain = _f(r["ratio_to_plain_loop"], 3)
            rows.append([name, cls["shape"], r["batch"], _f(r["mean_batch"], 1),
                         _f(r["kfuzz_cases_per_s"], 0), _f(r["plain_cases_per_s"], 0),
                         f"**{plain}**" if r["batch"] == "auto" else plain,
                         ", ".join(_f(x) for x in r["ratios_to_plain_loop"]),
                         _f(r.get("plain_f64_cases_per_s"), 0),
                         _f(r.get("ratio_to_plain_f64_loop")),
                         _f(r["hand_cases_per_s"], 0), _f(r["ratio"]),
                         _f(r.get("kfuzz_page_faults_per_case"), 1),
                         _f(r.get("plain_page_faults_per_case"), 1)])
    out.append(_table(["class", "shape", "batch", "mean batch", "kfuzz cases/s",
                       "plain loop cases/s", "ratio to plain loop", "per-run ratios",
                       "float64-draw loop cases/s (not the baseline)",
                       "ratio to float64-draw loop", "executor loop cases/s",
                       "ratio to executor loop", "kfuzz page faults per case",
                       "plain loop page faults per case"], rows))
    e = doc["engine"]
    one = next(r for r in e["campaign_no_work"] if r["batch"] == 1)
    auto = next(r for r in e["campaign_no_work"] if r["batch"] == "auto")
    o_ms = one["us_per_example"] / 1e3
    out += ["", f"Reading it: with no kernel work a batch-1 campaign costs {_f(o_ms, 2)} ms per "
            f"example on this machine (below), so at batch 1 the ratio c / (c + {_f(o_ms, 2)}) "
            f"reaches 0.8 only for cases costing c >= {_f(4 * o_ms, 1)} ms and 0.5 for c >= "
            f"{_f(o_ms, 1)} ms. A batch of b cases divides that cost by about b; the default "
            f"sizes the batch so that it stays near a tenth of the work (no-work campaign at "
            f"auto: {_f(auto['us_per_case'], 0)} µs per case, mean batch "
            f"{_f(auto['mean_batch'], 1)})."]
    if "materialise" in doc:
        rows = list(doc["materialise"].values())
        out += ["", "Building a case's inputs (ops.rmsnorm x and weight, normal; ms per case, "
                "medians): version 1 is the sequential `torch.Generator` every case used before "
                "position-stable inputs, version 2 the counter-based generator in float64 "
                "arithmetic, version 4 is version 2 with FP32 normals in float32 arithmetic (BF16 "
                "inputs: the same bits and path as version 2), version 5 (what the search draws "
                "now) is version 4 with every BF16 normal looked up (FP32 inputs: version 4's), "
                "`torch.randn` the plain loop's float32 draws rounded to the dtype.", "",
                _table(["shape", "dtype", "version 1, ms", "version 2, ms", "version 4, ms",
                        "version 5, ms", "v5 / v1", "torch.randn, ms", "v5 / torch.randn"],
                       [[m["shape"], m["dtype"], _f(m["v1_ms"], 3), _f(m["v2_ms"], 3),
                         _f(m["v4_ms"], 3), _f(m["v5_ms"], 3), _f(m["ratio"]),
                         _f(m["randn_ms"], 3), _f(m["v5_over_randn"])] for m in rows])]
    if doc.get("profile"):
        parts = list(next(iter(doc["profile"].values()))["run_case_shares"])
        out += ["", "Where a case's time goes: cProfile of one default campaign per shape "
                "(`--profile`; the profiler adds most to many small Python calls). Search = "
                "the campaign's time outside `run_case` (Hypothesis drawing, batching, "
                "coverage, feedback); inputs, kernel, oracle and compare are inclusive shares "
                "of `run_case`, rest the remainder of it (copies and checks of the inputs and "
                "outputs, the outcome).", "",
                _table(["shape", "mean batch", "ms per case (profiled)", "search share",
                        *parts],
                       [[p["shape"], _f(p["mean_batch"], 1), _f(p["campaign_ms_per_case"], 3),
                         f"{100 * p['search_share']:.0f}%",
                         *[f"{100 * p['run_case_shares'][k]:.0f}%" for k in parts]]
                        for p in doc["profile"].values()])]
    out += ["", "### Where the engine's time goes", "",
            "The same campaign settings with no kernel work at all (the small class's pins):", "",
            _table(["measurement", "µs per example"], [
                ["`@given(st.integers())`, empty body, the campaign's Hypothesis settings",
                 _f(e["bare_given_integer_us"], 0)],
                ["`@given(ops.rmsnorm case strategy)`, empty body", _f(e["given_case_strategy_us"], 0)],
                ["the same, the pinned fields (shape, x) drawn as `st.just`",
                 _f(e["given_pinned_strategy_us"], 0)],
                *[[f"kfuzz campaign, executor returning a stored outcome, batch {r['batch']}",
                   f"{_f(r['us_per_example'], 0)} ({_f(r['us_per_case'], 0)} per case)"]
                  for r in e["campaign_no_work"]],
            ]), "",
            f"cProfile of the no-work campaign at the default batch "
            f"({_f(e['profile_us_per_example'], 0)} µs per case under the profiler). Own time by "
            "package: " + ", ".join(
                f"{g} {100 * s:.1f}%" for g, s in sorted(e["profile_own_time_shares"].items(),
                                                         key=lambda kv: -kv[1])) +
            ". Inclusive time (nested, so these overlap): " + ", ".join(
                f"{g} {100 * s:.1f}%" for g, s in e["profile_inclusive_shares"].items()) + ".",
            "", "Functions with the most own time:", "",
            _table(["function", "calls / case", "own µs / case", "cumulative µs / case"],
                   [[f"`{r['function']}`", r["calls_per_example"], r["own_us_per_example"],
                     r["cum_us_per_example"]] for r in e["profile_top_own"][:10]])]
    return "\n".join(out)


def _reach(doc: dict[str, Any]) -> str:
    """How far past the first failure bench.smallest searched, as the results say."""
    reach = {f["reach"] for f in doc["faults"] if "reach" in f}
    return ", ".join(str(r) for r in sorted(reach))


def _per_bucket(f: dict[str, Any]) -> str:
    """A fault's smallest failing grid size per bucket; "-" for results without buckets."""
    by_bucket = f.get("by_bucket") or {}
    return "<br>".join(f"`{b}` {e['size']}" + ("" if e["reference_passes"] else
                                                 " (correct kernel fails it too)")
                       for b, e in sorted(by_bucket.items())) or "-"


def smallest(doc: dict[str, Any]) -> str:
    """The brute-force smallest failing case section."""
    out = ["## 2a. Smallest failing case of each seeded fault (brute force)", "",
           _provenance(doc, "one pass"), "",
           "Each fault's grid of small cases (bench/seeded.py) runs smallest first until one "
           "fails; every smaller grid case passes. Size = `Target.case_size` (total input "
           "elements)." + (
               f" The search goes on past the first failure, up to {_reach(doc)} times its "
               "size or the whole grid, for the smallest case of each failure bucket (output, "
               "failure kind and error class) the fault reaches: a shrunk case is held to the "
               "smallest case of its own bucket (section 2b)." if _reach(doc) else ""), ""]
    rows = [[f["fault"], f["target"], f["kernel"],
             f["size"] if f["size"] is not None else
             (f"none in the first {f['tried']}" if f["grid_cases"] else "no grid: not searched"),
             f["tried"], f["grid_cases"],
             f["reference_passes"], _per_bucket(f),
             _f(f.get("searched_to_size"), 0) if "searched" in f else "-",
             f"`{json.dumps(f['case'])}`" if f["case"] else "-"]
            for f in doc["faults"]]
    out.append(_table(["fault", "target", "kernel", "smallest failing size",
                       "cases run to it", "grid cases", "correct kernel passes it",
                       "smallest failing size per bucket", "searched to size", "case"], rows))
    return "\n".join(out)


def _detect(s: dict[str, Any]) -> str:
    return f"{s['detected']}/{s['runs']}"


def _cases_ratio(f: dict[str, Any]) -> str:
    """kfuzz's median cases to detection over uniform sampling's, or what decides instead."""
    k, u = f["kfuzz"], f["uniform"]
    if not k["detected"]:
        return "kfuzz never detected"
    if not u["detected"]:
        return "uniform never detected"
    return _f(k["median_examples"] / u["median_examples"])


def _fifth(f: dict[str, Any]) -> bool:
    """kfuzz needs at most 1/5 of uniform sampling's cases, or detects more often."""
    k, u = f["kfuzz"], f["uniform"]
    if k["detected"] != u["detected"]:
        return k["detected"] > u["detected"]
    return bool(k["detected"]) and k["median_examples"] <= 0.2 * u["median_examples"]


def _bars(f: dict[str, Any]) -> str:
    """The buckets the shrunk kfuzz cases of `f` fail in, in run order, each with the smallest
    known case of that bucket; "-" for results that do not name them."""
    by_bucket = f.get("smallest_known_by_bucket") or {}
    names = dict.fromkeys(b for b in f["kfuzz"].get("shrunk_buckets", []) if b)
    return "; ".join(f"`{b}`: {by_bucket[b]['size']} ({by_bucket[b]['source']})"
                     for b in names if b in by_bucket) or "-"


def _shrinking(doc: dict[str, Any]) -> list[str]:
    """The shrinking part of the bug-finding section: each shrunk case against the smallest
    known case of its bucket and of any bucket. Results from before buckets were recorded hold
    only the ratio to any bucket's (as `shrunk_over_smallest`); their other columns read "-"."""
    out = ["### Shrinking", "",
           "Shrunk size against the smallest failing case known (the brute-force result, a "
           "smaller case any run here met, or a smaller one an earlier run's results or "
           "bench/known_cases.json hold, checked to fail again). kfuzz's shrinker keeps a "
           "smaller case only when it fails in a failure bucket of the case it started from "
           "(output, failure kind and error class, such as `y:mismatch:wrong` against "
           "`y:mismatch:rounding`), so each shrunk case is held to the smallest known case of "
           "its own bucket; the ratio to the smallest of any bucket is shown beside it. "
           "\"all within 2x\" reads the ratio of its bucket. Uniform sampling does not "
           "shrink; the size of its first failing case is shown for scale.", ""]
    rows = []
    for f in doc["faults"]:
        known, k = f.get("smallest_known"), f["kfuzz"]
        kruns = [r for r in f["kfuzz_runs"] if "shrink" in r]
        shrink_s = [r["shrink"]["seconds"] for r in kruns]
        new = "shrunk_over_smallest_any" in k
        ratios = k.get("shrunk_over_smallest", []) if new else []
        anys = k.get("shrunk_over_smallest_any" if new else "shrunk_over_smallest", [])
        rows.append([
            f["fault"], f"{known['size']} ({known['source']})" if known else "-",
            ", ".join(str(r["size"]) for r in kruns) or "-", _bars(f),
            ", ".join(_f(x, 1) if x is not None else "-" for x in ratios) or "-",
            ", ".join(_f(x, 1) for x in anys) or "-",
            ("no" if None in ratios or max(ratios) > 2 else "yes") if ratios else "-",
            _f(sorted(shrink_s)[len(shrink_s) // 2], 1) if shrink_s else "-",
            _f(f["uniform"].get("median_size"), 0)])
    out.append(_table(["fault", "smallest known size (any bucket)", "kfuzz shrunk sizes",
                       "shrunk cases' buckets: smallest known there",
                       "shrunk / smallest of its bucket", "shrunk / smallest of any bucket",
                       "all within 2x", "median shrink s",
                       "uniform first failing size (median)"], rows))
    out += ["", "Smallest known failing cases and the shrunk case of the first kfuzz run:", ""]
    for f in doc["faults"]:
        known = f.get("smallest_known")
        first = next((r for r in f["kfuzz_runs"] if "shrink" in r), None)
        own = (f.get("smallest_known_by_bucket") or {}).get(first.get("bucket")) if first else None
        out.append(f"- {f['fault']}: smallest `{json.dumps(known['case']) if known else '-'}`"
                   + (f"; smallest in `{first['bucket']}` `{json.dumps(own['case'])}`"
                      if own and first and own["case"] not in ((known or {}).get("case"),
                                                               first["case"]) else "")
                   + (f"; kfuzz shrunk `{json.dumps(first['case'])}`" if first else ""))
    return out


def bug_finding(doc: dict[str, Any]) -> str:
    """The bug-finding section."""
    out = ["## 2b. Bug-finding power: kfuzz, a fixed-seed test and uniform random sampling", "",
           _provenance(doc, f"{doc['seeds']} seeds per method, {doc['budget']:.0f} s search "
                            "budget per run"), "",
           f"- fixed: the production-shape case with normal inputs at seeds "
           f"{', '.join(str(s) for s in doc['fixed_seeds'])}, as pypto-lib's tests run today.",
           "- kfuzz: `run_campaign`, dev profile, batch 1, stopped at its first shrunk finding.",
           "- uniform: each field of the base case space (shapes, dtypes, distribution kinds "
           "and parameters, index sets, seeds) drawn uniformly from its range "
           "(bench/samplers.py), built by the same materialisation, same executor, until a "
           "case fails or the budget is spent: the random test a user writes. kfuzz's regimes "
           "are its own.",
           f"- hit rate: the fraction of {doc['faults'][0]['uniform_hit_rate']['samples']} "
           "uniformly drawn cases that show the fault; "
           f"\"rare\" below {100 * RARE_RATE:.0f}%.",
           "- examples and seconds: to the first failing case, medians over the runs that "
           "detected; a detection counts only if the correct kernel passes that case.",
           "- verdict: more detections wins; at equal detections the median time to detect "
           "decides when one side takes over 1.25x and 0.25 s longer.", ""]
    rows = []
    for f in doc["faults"]:
        k, u, fx = f["kfuzz"], f["uniform"], f["fixed"]
        rate = f["uniform_hit_rate"]["rate"]
        rows.append([
            f["fault"] + ("" if f.get("listed", True) else " (extra)"), f["needs"],
            f"{100 * rate:.1f}%" + (" (rare)" if rate < RARE_RATE else ""),
            ("yes" if fx["detected"] else "no") + f" ({sum(s['failed'] for s in fx['seeds'])}"
            f"/{len(fx['seeds'])} seeds)",
            _detect(k), _f(k.get("median_examples"), 0), _f(k.get("median_seconds")),
            _detect(u), _f(u.get("median_examples"), 0), _f(u.get("median_seconds")),
            _cases_ratio(f), f"**{f['kfuzz_vs_uniform']}**"])
    missed = [f["fault"] for f in doc["faults"] if not f["fixed"]["detected"]]
    rare = [f["fault"] for f in doc["faults"] if f["uniform_hit_rate"]["rate"] < RARE_RATE]
    factors = [f["uniform"]["median_size"] / f["kfuzz"]["median_size"] for f in doc["faults"]
               if f["uniform"].get("median_size") and f["kfuzz"].get("median_size")]
    factors.sort()
    out += [f"Reading it: the fixed-seed test at the production shape misses "
            f"{len(missed)} of {len(doc['faults'])} faults ({', '.join(missed) or 'none'}). "
            f"Rare in its case space (uniform hit rate < {100 * RARE_RATE:.0f}%): "
            f"{', '.join(rare) or 'none'}. kfuzz's shrunk case is "
            + (f"{factors[len(factors) // 2]:.0f}x smaller (median over faults; from "
               f"{factors[0]:.0f}x to {factors[-1]:.0f}x) than the first failing case uniform "
               "sampling met, which a person would then have to reduce by hand."
               if factors else "not comparable here.") + "", ""]
    out.append(_table(["fault", "shows when", "uniform hit rate", "fixed-seed test",
                       "kfuzz detected", "kfuzz examples", "kfuzz s", "uniform detected",
                       "uniform examples", "uniform s", "cases, kfuzz / uniform",
                       "kfuzz vs uniform"], rows))
    out += ["", *_shrinking(doc)]
    return "\n".join(out)


# Resamples behind `five_run_misses`, and the runs in each (section 2b's seeds per method).
RESAMPLES = 10_000
FIVE = 5


def five_run_misses(f: dict[str, Any], resamples: int = RESAMPLES) -> float | None:
    """How often five kfuzz runs and five uniform runs, drawn with replacement from `f`'s
    many-seed runs, miss the 1/5 bar (`_fifth`): the spread a five-run median has. None when
    the result holds no per-run records."""
    k_runs, u_runs = f.get("kfuzz_runs"), f.get("uniform_runs")
    if not k_runs or not u_runs:
        return None
    rng = random.Random(0)
    misses = 0
    for _ in range(resamples):
        sample = {"kfuzz": run_summary(rng.choices(k_runs, k=FIVE)),
                  "uniform": run_summary(rng.choices(u_runs, k=FIVE))}
        misses += not _fifth(sample)
    return misses / resamples


def detection(doc: dict[str, Any]) -> str:
    """The many-seed detection section (bench.bug_finding --detect-only)."""
    rows = []
    for f in doc["faults"]:
        k, u = f["kfuzz"], f["uniform"]
        misses = five_run_misses(f)
        rows.append([f["fault"], f"{100 * f['uniform_hit_rate']['rate']:.1f}%", _detect(k),
                     _f(k.get("median_examples"), 0), _detect(u),
                     _f(u.get("median_examples"), 0), _cases_ratio(f),
                     "yes" if _fifth(f) else "no",
                     "-" if misses is None else f"{100 * misses:.0f}%"])
    return "\n".join([
        "## 2c. Detection on the rare faults over more seeds", "",
        _provenance(doc, f"{doc['seeds']} seeds per method, {doc['budget']:.0f} s search "
                         "budget per run, each kfuzz run ended at its first failing case"), "",
        "Section 2b's medians come from five runs each. The same comparison over more seeds, "
        "detection only (nothing shrunk), on the faults whose uniform hit rate is under "
        f"{100 * RARE_RATE:.0f}%. The last column is how often five runs of each method, drawn "
        f"with replacement from these ({RESAMPLES:,} draws, random.Random(0)), miss the 1/5 "
        "bar: how far a five-run median can fall from the many-seed one.", "",
        _table(["fault", "uniform hit rate", "kfuzz detected", "kfuzz cases (median)",
                "uniform detected", "uniform cases (median)", "cases, kfuzz / uniform",
                "at most 1/5", "five runs miss 1/5 (resampled)"], rows),
    ])


def plain_share(docs: dict[str, dict[str, Any] | None]) -> str:
    """The plain-share section: detection only, all faults, one run per share."""
    runs = [(n, docs.get(f"plain_share_{n}")) for n in SHARES]
    if any(doc is None for _, doc in runs):
        return ("## 2d. The plain share\n\nNo results yet: run `python -m bench.bug_finding "
                "--detect-only --seeds 10 --plain-share N --out bench/results/plain_share_N.json`"
                f" for N in {', '.join(map(str, SHARES))}.")
    first = runs[0][1]
    assert first is not None
    rows = []
    for i, f in enumerate(first["faults"]):
        row = [f["fault"], f"{100 * f['uniform_hit_rate']['rate']:.1f}%",
               _f(f["uniform"].get("median_examples"), 1)]
        for _, doc in runs:
            g = doc["faults"][i]  # type: ignore[index]
            row += [f"{_detect(g['kfuzz'])}, {_f(g['kfuzz'].get('median_examples'), 1)}",
                    _cases_ratio(g)]
        rows.append(row)
    worst = [f"1/{n}: {doc['worst_cases_ratio']['ratio']} ({doc['worst_cases_ratio']['fault']})"
             for n, doc in runs if doc and doc.get("worst_cases_ratio")]
    headers = ["fault", "uniform hit rate", "uniform cases (median)"]
    for n, _ in runs:
        headers += [f"1/{n} plain: detected, cases (median)", f"1/{n}: kfuzz / uniform"]
    return "\n".join([
        "## 2d. The plain share: one drawn case in 8 or in 4", "",
        _provenance(first, f"{first['seeds']} seeds per method, {first['budget']:.0f} s search "
                           "budget per run, each kfuzz run ended at its first failing case"), "",
        "One case in N that kfuzz draws is plain: sizes uniform over the range, no regime "
        "(`fuzz/search/drawn.py`). The same detection-only comparison with N = "
        f"{' and N = '.join(map(str, SHARES))} (`--plain-share N`), every fault, the two runs "
        "side by side on this machine (cases are counted, not timed). Uniform sampling's runs "
        f"are the same in both. Worst kfuzz / uniform: {'; '.join(worst)}.", "",
        _table(headers, rows),
    ])


def corpus_scale(doc: dict[str, Any]) -> str:
    """The corpus section."""
    s, n = doc["store_seconds"], doc["findings"]
    lst = doc["list_seconds"]
    out = ["## 3. Corpus scale", "", _provenance(doc, f"medians of {doc['runs']} runs; the "
                                                     f"CLI timings medians of {lst['runs']}"),
           "", _table(["step", "seconds", "per item, ms"], [
               [f"insert {n} new findings, one `record_findings` call", _f(s["insert"], 3),
                _f(1e3 * s["insert"] / n, 3)],
               [f"upsert the same {n}, one call", _f(s["upsert"], 3),
                _f(1e3 * s["upsert"] / n, 3)],
               [f"upsert the same {n}, one `record_finding` call (transaction) each",
                _f(s["upsert_one_by_one"], 3), _f(1e3 * s["upsert_one_by_one"] / n, 3)],
               *([["the same with `PRAGMA synchronous = NORMAL` (what-if, not kfuzz's setting)",
                   _f(s["upsert_one_by_one_sync_normal"], 3),
                   _f(1e3 * s["upsert_one_by_one_sync_normal"] / n, 3)]]
                 if "upsert_one_by_one_sync_normal" in s else []),
               [f"replay {doc['replays']} small stored cases (`kfuzz.store.replay.replay`, each "
                f"replay recorded)", _f(doc["replay_seconds"], 3),
                _f(1e3 * doc["replay_seconds"] / doc["replays"], 3)],
               [f"`kfuzz corpus list` on {doc['list_rows']} rows, output to /dev/null",
                _f(lst["plain"], 3), "-"],
               [f"`kfuzz corpus list --json` on {doc['list_rows']} rows", _f(lst["json"], 3),
                "-"],
               ["`kfuzz corpus list` on a one-row corpus (start-up and imports)",
                _f(lst["one_row_corpus"], 3), "-"],
           ]), "", f"Replay verdicts: {doc['replay_statuses']}.", "",
           "Where a bulk upsert spends its time (cProfile, own time):", "",
           _table(["function", "own share", "cumulative share", "calls per finding"],
                  [[f"`{r['function']}`", f"{100 * r['own_share']:.1f}%",
                    f"{100 * r['cum_share']:.1f}%", r["calls_per_finding"]]
                   for r in doc["upsert_profile"][:8]])]
    return "\n".join(out)


# -- the page ---------------------------------------------------------------------------------

def _within_2x(faults: list[dict[str, Any]]) -> list[str]:
    """The targets row on shrunk sizes: each fault's worst shrunk case against the smallest
    known case of its own bucket (against any bucket's, for results from before buckets were
    recorded, which say so)."""
    per_bucket = all("shrunk_over_smallest_any" in f["kfuzz"] for f in faults)
    worst = {f["fault"]: max((x if x is not None else float("inf")
                              for x in f["kfuzz"].get("shrunk_over_smallest", [])), default=0)
             for f in faults}
    over = [f"{k} ({_f(v, 1)}x)" for k, v in worst.items() if v > 2]
    return ["shrunk cases within 2x of the smallest failing case"
            + (" of their bucket" if per_bucket else ""), "<= 2x",
            f"over 2x: {', '.join(over)}" if over else "all within 2x",
            "not met" if over else "met"]


def _twice_plus_ten(fault: dict[str, Any]) -> bool:
    """Whether kfuzz needed at most twice uniform sampling's median cases to detection plus
    10 (met where uniform sampling detected nothing, unmet where kfuzz did)."""
    k, u = fault["kfuzz"], fault["uniform"]
    if not k["detected"]:
        return not u["detected"]
    if not u["detected"]:
        return True
    return k["median_examples"] <= 2 * u["median_examples"] + 10


def targets(docs: dict[str, dict[str, Any] | None]) -> str:
    """The issue's targets against the results."""
    rows = []
    ov = docs.get("overhead")
    if ov:
        for name, goal in (("small", 0.5), ("medium", 0.8), ("large", 0.9)):
            cls = ov["classes"][name]
            auto = _by_batch(cls, "auto")
            met = "met" if auto["ratio_to_plain_loop"] >= goal else "not met"
            rows.append([f"default profile vs the plain loop, {cls['shape']}", f">= {goal}",
                         f"{_f(auto['ratio_to_plain_loop'], 3)} (mean batch "
                         f"{_f(auto['mean_batch'], 1)})", met])
        no_work = next(r for r in ov["engine"]["campaign_no_work"] if r["batch"] == "auto")
        rows.append(["no-work campaign, default profile", "<= 500 µs per case",
                     f"{_f(no_work['us_per_case'], 0)} µs",
                     "met" if no_work["us_per_case"] <= 500 else "not met"])
    bf = docs.get("bug_finding")
    if bf:
        faults = bf["faults"]

        def detected(group: list[dict[str, Any]]) -> str:
            slowest = max((r.get("seconds_to_detect", 0) for f in group
                           for r in f["kfuzz_runs"]), default=0)
            return (f"{sum(f['kfuzz']['detected'] for f in group)}/"
                    f"{sum(f['kfuzz']['runs'] for f in group)} kfuzz runs detected within "
                    f"{bf['budget']:.0f} s; slowest first detection {_f(slowest)} s")

        ok = all(f["kfuzz"]["detected"] == f["kfuzz"]["runs"] for f in faults)
        missed = [f"{f['fault']} ({f['kfuzz']['detected']}/{f['kfuzz']['runs']})"
                  for f in faults if f["kfuzz"]["detected"] < f["kfuzz"]["runs"]]
        rows.append([f"every seeded fault detected in every run within {bf['budget']:.0f} s "
                     f"({len(faults)} faults)", "all runs",
                     detected(faults) + (f"; missed in: {', '.join(missed)}" if missed else ""),
                     "met" if ok else "not met"])
        over = [f"{f['fault']} ({_f(f['kfuzz']['median_examples'], 0)} against "
                f"{_f(f['uniform']['median_examples'], 0)})" for f in faults
                if not _twice_plus_ten(f)]
        rows.append(["every fault: kfuzz's median cases to detection at most 2x uniform "
                     "sampling's plus 10", "<= 2u + 10",
                     f"over it: {', '.join(over) or 'none'}", "met" if not over else "not met"])
        rare = [f for f in faults if f["uniform_hit_rate"]["rate"] < RARE_RATE]
        short = [f"{f['fault']} ({_cases_ratio(f)})" for f in rare if not _fifth(f)]
        rows.append([f"rare faults (uniform hit rate < {100 * RARE_RATE:.0f}%): kfuzz needs at "
                     "most 1/5 of the cases uniform sampling needs (medians), or finds what it "
                     "does not", "<= 0.2",
                     f"rare: {', '.join(f['fault'] for f in rare) or 'none'}; short of it: "
                     f"{', '.join(short) or 'none'}",
                     "met" if not short else "not met"])
        det = docs.get("detection")
        if det:
            short = [f"{f['fault']} ({_cases_ratio(f)})" for f in det["faults"]
                     if not _fifth(f)]
            rows.append([f"the same over {det['seeds']} seeds (section 2c, detection only)",
                         "<= 0.2", f"{len(det['faults'])} rare faults; short of it: "
                         f"{', '.join(short) or 'none'}", "met" if not short else "not met"])
        rows.append(_within_2x(faults))
    cs = docs.get("corpus_scale")
    if cs:
        rows.append(["replay of 1,000 small cases", "< 60 s",
                     f"{_f(cs['replay_seconds'])} s for {cs['replays']}",
                     ("met" if cs["replay_seconds"] < 60 else "not met")
                     if cs["replays"] == 1000 else "not measured at 1,000"])
        upsert = cs["store_seconds"]["upsert"]
        rows.append(["10,000 upserts", "< 5 s",
                     f"{_f(upsert)} s in one call, {_f(cs['store_seconds']['upsert_one_by_one'])}"
                     f" s one call each ({cs['findings']} findings)",
                     ("met (one call)" if upsert < 5 else "not met")
                     if cs["findings"] == 10000 else "not measured at 10,000"])
    su = docs.get("startup")
    if su:
        ratio = su["corpus_list_over_sqlite_utils"]
        rows.append(["`kfuzz corpus list` on a one-row corpus against `python -c \"import "
                     "sqlite_utils\"`", f"<= {su['goal_ratio']:g}x",
                     f"{_f(ratio)}x ({_f(su['commands']['corpus_list']['median_s'], 3)} s)",
                     "met" if ratio <= su["goal_ratio"] else "not met"])
    return _table(["target", "goal", "measured", "status"], rows)


def workers(doc: dict[str, Any]) -> str:
    """The --workers section."""
    rows = [[w, len(doc["results"][w]), _f(doc["median_wall_s"][w]),
             ", ".join(_f(r["wall_s"]) for r in doc["results"][w])]
            for w in ("1", "2")]
    return "\n".join([
        "## 5. --workers: one process or two", "",
        _provenance(doc, f"medians of {doc['runs']} alternating runs of " + (
            f"the library's run path (`kfuzz.run.runner.run`, what `kfuzz run {' '.join(doc['targets'])} "
            f"--max-examples {doc['examples']} --compare exact` calls), a fresh corpus each, in "
            "one warm process after an untimed warm-up run"
            if doc.get("method") == "library" else
            f"`kfuzz run {' '.join(doc['targets'])} --max-examples {doc['examples']} --compare "
            "exact`, a fresh process and corpus each")),
        "",
        _table(["--workers", "runs", "median wall, s", "each run, s"], rows), "",
        f"Speed-up of two workers over one: {_f(doc['speedup'])}x. Both targets fuzzed into one "
        f"corpus in every run: {doc['all_runs_fuzzed_both_targets']}; every reported finding "
        f"stored (no lost rows): {doc['no_lost_rows']}. Each worker is a fresh process that "
        "imports torch (about 2 s here) and runs torch with its share of the cores (one thread "
        "each here): with torch's default of one thread per core in every process, the same "
        "runs took 2.6x longer with two workers than with one.",
    ])


def startup(doc: dict[str, Any]) -> str:
    """The start-up section."""
    base = doc["commands"]["import_sqlite_utils"]["median_s"]
    rows = [[f"`{c['command']}`", _f(c["median_s"], 3), _f(c["median_s"] / base),
             ", ".join(_f(x, 3) for x in c["seconds"])] for c in doc["commands"].values()]
    return "\n".join([
        "## 6. Start-up: commands that need no kernel", "",
        _provenance(doc, f"medians of {doc['runs']} alternating runs, each command a fresh "
                         "process with its output sent to /dev/null, after one untimed warm-up"),
        "", _table(["command", "median s", "/ import sqlite_utils", "each run, s"], rows), "",
        "The corpus commands, `--help` and `targets --names` import neither torch, Triton nor "
        "Hypothesis (tests/test_startup.py checks it); built-in targets are registered on first "
        "use, each module of `kfuzz.targets.builtin` when a target of it is named. `import torch` is "
        "what every command paid before.",
    ])


def draws(doc: dict[str, Any]) -> str:
    """The new-draws section (bench.draws)."""
    rows = []
    for t in doc["targets"]:
        m = t["median"]
        rows.append([t["target"], _f(m["fresh"]["new_draw_share"]),
                     _f(m["hypothesis"]["new_draw_share"]),
                     _f(m["fresh"]["new_configuration_share"]),
                     _f(m["hypothesis"]["new_configuration_share"])])
    return "\n".join([
        "## New draws per case: fresh rounds and Hypothesis' rounds", "",
        _provenance(doc, f"medians of {doc['seeds']} rounds of {doc['round_examples']} examples "
                         "per target and kind"),
        "",
        "A case is a *new draw* when it differs from the case before it in at least half of "
        "its fields (the seed not counted), a *new configuration* when no earlier case of the "
        "round had its fields. Hypothesis' own generation follows each new example with up to "
        "five mutations (a part copied over another part with the same label) and, from half "
        "of the round on, hill-climbs the feedback scores: most of its cases change one or two "
        "fields of an earlier one. The search alternates the two kinds of round, fresh first "
        "(`fuzz/search/fresh.py`).", "",
        _table(["target", "new draws, fresh", "new draws, Hypothesis",
                "new configurations, fresh", "new configurations, Hypothesis"], rows),
    ])


def render(results: Path) -> str:
    """BENCHMARKS.md's text from the JSON files in `results`."""
    docs = {name: _load(results, name) for name in SECTIONS}
    parts = [
        "# kfuzz benchmarks", "",
        "Generated by `python -m bench.render` from the JSON files in `bench/results/`; do not "
        "edit by hand. Each section names the command that produced it, the machine and the "
        "date. Every benchmark process runs torch with one thread "
        "(`torch.set_num_threads(1)`). The machine is shared with other users, so timings "
        "carry noise: hence medians, and ratios measured side by side in one process.", "",
        "Reproduce (about 20 minutes in all here; `--quick` runs each in seconds to a minute):", "",
        "```bash",
        "python -m bench.overhead",
        "python -m bench.library_overhead",
        "python -m bench.draws",
        "python -m bench.smallest",
        "python -m bench.bug_finding      # reads bench/results/smallest.json",
        "python -m bench.bug_finding --detect-only --seeds 20 --out bench/results/detection.json "
        "--fault ...   # the rare faults",
        "python -m bench.bug_finding --detect-only --seeds 10 --plain-share N --out "
        "bench/results/plain_share_N.json   # N = 8 and 4",
        "python -m bench.corpus_scale",
        "python -m bench.workers",
        "python -m bench.startup",
        "python -m bench.render",
        "```", "",
        "## Where kfuzz stands against the targets", "", targets(docs), "",
    ]
    from bench.library_overhead import section as library_overhead

    for name, fn in (("overhead", overhead), ("library_overhead", library_overhead),
                     ("draws", draws), ("smallest", smallest),
                     ("bug_finding", bug_finding), ("detection", detection),
                     ("plain_share", None), ("corpus_scale", corpus_scale),
                     ("workers", workers), ("startup", startup)):
        if fn is None:
            parts += [plain_share(docs), ""]
            continue
        doc = docs[name]
        command = ("python -m bench.bug_finding --detect-only --seeds 20 --out "
                   "bench/results/detection.json" if name == "detection"
                   else f"python -m bench.{name}")
        parts += [fn(doc) if doc else f"## {name}\n\nNo results yet: run `{command}`.", ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring. Returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--results", default=str(RESULTS), metavar="DIR")
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"), metavar="PATH")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if the file differs from what the results render to")
    args = p.parse_args(argv)
    text = render(Path(args.results))
    out = Path(args.out)
    if args.check:
        same = out.exists() and out.read_text() == text
        print(f"{out} is {'up to date' if same else 'stale: run python -m bench.render'}")
        return 0 if same else 1
    out.write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

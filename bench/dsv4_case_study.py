"""DeepSeek-V4 case study: the two precision faults of pypto-lib PR #361, measured.

Part 1 measures mismatch ratios at the production shape (T=4, H=64, D=512; N=4096 cache rows,
top-k 512 with a 128-row window) over several seeds, in exact comparison and with pypto-lib's
thresholds. Part 2 runs kfuzz campaigns from nothing but a target and a budget, and records
the time to the first finding, the shrunk case and its size.

    python bench/dsv4_case_study.py [--seeds 10] [--out bench/results/dsv4_case_study.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from kfuzz.cases.materialise import generator
from kfuzz.execute.executor import InProcessExecutor, Job
from kfuzz.kernels.deepseek_v4.diagnose import exp_weight_ties
from kfuzz.search.campaign import CampaignConfig, run_campaign
from kfuzz.targets.registry import get

EXACT = {"mode": "exact", "max_ratio": 0.0}
PYPTO = None  # the targets' default comparator: allclose(atol=1e-4, rtol=1/128), 0.5%
PROD_INDEX = {"n_rows": 4096, "k": 512, "n_valid": 512, "window": 128, "ragged": False,
              "duplicates": False, "sorted": False, "out_of_range": False}
NORMAL = {"kind": "normal", "scale": 1.0}


def q_case(seed: int) -> dict:
    return {"shape": [4, 64, 512], "rope_dim": 64, "q": NORMAL, "max_position": 65536,
            "eps": 1e-6, "seed": seed}


def attn_case(seed: int) -> dict:
    return {"shape": [4, 64, 512], "index": PROD_INDEX, "q": NORMAL, "kv": NORMAL,
            "sink": NORMAL, "seed": seed}


def ratios(executor, target, kernel, oracle, make_case, seeds, comparator):
    jobs = [Job(target, kernel, oracle, make_case(s), comparator) for s in range(seeds)]
    values = [o.worst_ratio() for o in executor.evaluate(jobs)]
    return {"mean": statistics.mean(values), "min": min(values), "max": max(values)}


def campaign(**kw) -> dict:
    first = []
    start = time.perf_counter()

    def on_finding(finding):
        if not first:
            first.append(time.perf_counter() - start)

    result = run_campaign(CampaignConfig(**kw), on_finding=on_finding)
    shrunk = next((f for f in result.findings if f.kind == "shrunk"), None)
    out = {"config": {k: v for k, v in kw.items()}, "examples": result.examples,
           "seconds": round(result.seconds, 2), "found": shrunk is not None,
           "seconds_to_first_finding": round(first[0], 2) if first else None}
    if shrunk:
        out.update(shrunk_case=shrunk.case, shrunk_ratio=shrunk.outcome.worst_ratio(),
                   shrink=shrunk.shrink)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", default="bench/results/dsv4_case_study.json")
    args = parser.parse_args()
    ex = InProcessExecutor()
    table = {}
    for kernel in ("recip_sqrt", "torch_rsqrt", "rsqrt_hw"):
        for name, comparator in (("exact", EXACT), ("pypto", PYPTO)):
            table[f"q_norm_rope {kernel} vs fp64, {name}"] = ratios(
                ex, "dsv4.q_norm_rope", kernel, "fp64", q_case, args.seeds, comparator)
    for oracle in ("full_fp32", "tiled64", "fp64"):
        for name, comparator in (("exact", EXACT), ("pypto", PYPTO)):
            table[f"sparse_attn tile64 vs {oracle}, {name}"] = ratios(
                ex, "dsv4.sparse_attn", "tile64", oracle, attn_case, args.seeds, comparator)
    table["sparse_attn tile64_away vs tiled64, exact"] = ratios(
        ex, "dsv4.sparse_attn", "tile64_away", "tiled64", attn_case, args.seeds, EXACT)

    campaigns = {
        "rsqrt_hw, production shape": campaign(
            target="dsv4.q_norm_rope", kernel="rsqrt_hw",
            comparator={"mode": "exact", "max_ratio": 0.005}, pins={"shape": [4, 64, 512]},
            max_examples=200, seed=0),
        "rsqrt_hw, free shape": campaign(
            target="dsv4.q_norm_rope", kernel="rsqrt_hw",
            comparator={"mode": "exact", "max_ratio": 0.005}, max_examples=200, seed=0),
        "recip_sqrt, production shape": campaign(
            target="dsv4.q_norm_rope", kernel="recip_sqrt",
            comparator={"mode": "exact", "max_ratio": 0.005}, pins={"shape": [4, 64, 512]},
            max_examples=200, seed=0),
        "tile64 vs pre-fix golden": campaign(
            target="dsv4.sparse_attn", kernel="tile64", oracle="full_fp32",
            comparator={"mode": "exact", "max_ratio": 0.005}, max_examples=200, seed=0),
        "tile64 vs post-fix golden": campaign(
            target="dsv4.sparse_attn", kernel="tile64", oracle="tiled64",
            comparator={"mode": "exact", "max_ratio": 0.0}, max_examples=200, seed=0),
        "tile64_away vs post-fix golden (half-even)": campaign(
            target="dsv4.sparse_attn", kernel="tile64_away", oracle="tiled64",
            comparator={"mode": "exact", "max_ratio": 0.0}, max_examples=300, seed=1),
    }
    tie = campaigns["tile64_away vs post-fix golden (half-even)"]
    if tie["found"]:
        target = get("dsv4.sparse_attn")
        inputs = target.inputs(tie["shrunk_case"], generator(tie["shrunk_case"]["seed"]))
        tie["ties_in_shrunk_case"] = exp_weight_ties(**inputs, tile=64)
    doc = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "cpu": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads()},
        "date": time.strftime("%Y-%m-%d"),
        "seeds": args.seeds,
        "ratios_at_production_shape": table,
        "campaigns": campaigns,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2))
    print("| comparison | mean | min | max |\n|---|---|---|---|")
    for name, r in table.items():
        print(f"| {name} | {100 * r['mean']:.4f}% | {100 * r['min']:.4f}% | {100 * r['max']:.4f}% |")
    print("\n| campaign | found | s to first | examples | shrunk ratio | size before -> after |")
    print("|---|---|---|---|---|---|")
    for name, c in campaigns.items():
        shrink = c.get("shrink") or {}
        ratio = f"{100 * c['shrunk_ratio']:.2f}%" if c["found"] else "-"
        print(f"| {name} | {c['found']} | {c['seconds_to_first_finding']} | {c['examples']} | "
              f"{ratio} | {shrink.get('size_before', '-')} -> {shrink.get('size_after', '-')} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

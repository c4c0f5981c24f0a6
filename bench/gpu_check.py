"""GPU check: fuzz the Triton, torch.compile and SDPA targets on one device with a fixed
budget and write a table of findings, mismatch ratios and cases per second.

Every campaign gets the same search budget (seconds) and shrink budget, a fixed seed, and
stores its findings in a fresh corpus next to the table, so that they can be replayed
(`kfuzz replay --db ...`, on a CPU too). A kernel that cannot run on the device (a CUDA-only
SDPA backend on a CPU, Triton without the extra) is listed as unavailable with the reason.
The run stops starting campaigns once --max-seconds is spent, and says which it skipped.

    python bench/gpu_check.py                   # --device cuda: one GPU, under 5 minutes
    python bench/gpu_check.py --device cpu      # the same campaigns on a CPU (interpreter)

Writes bench/results/gpu_check_<device>.md, .json and .db (the corpus).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from kfuzz.errors import KfuzzError
from kfuzz.search.campaign import CampaignConfig, run_campaign
from kfuzz.store.corpus import CorpusStore
from kfuzz.store.rows import versions
from kfuzz.targets.registry import get

EXACT = {"mode": "exact", "max_ratio": 0.0}


@dataclass(frozen=True)
class Check:
    """One campaign: what it runs and what it answers."""

    target: str
    kernel: str
    oracle: str | None = None
    comparator: dict[str, Any] | None = None
    question: str = ""


CHECKS = (
    Check("triton.rmsnorm", "rsqrt", question="in-kernel BF16 cast rounds to nearest?"),
    Check("triton.rmsnorm", "rsqrt_torchcast", question="FP32 store + torch cast"),
    Check("triton.rmsnorm", "recip_sqrt", question="1/sqrt, in-kernel cast"),
    Check("triton.rmsnorm", "ieee", question="div_rn(1, sqrt_rn), in-kernel cast"),
    Check("triton.rmsnorm", "rsqrt", "ieee", EXACT, "rsqrt vs IEEE inverse root (kernel vs kernel)"),
    Check("triton.softmax", "incast", question="in-kernel BF16 cast rounds to nearest?"),
    Check("triton.softmax", "torchcast", question="FP32 store + torch cast"),
    Check("triton.sparse_attn", "triton64", question="same numerics as the tiled golden?"),
    Check("triton.sparse_attn", "triton64_cast", question="with Triton's own BF16 casts"),
    Check("ops.rmsnorm", "compiled_lowp", "eager_lowp", EXACT,
          "Inductor vs eager, all-BF16 chain (kernel vs kernel)"),
    Check("ops.rmsnorm", "compiled_fp32", question="Inductor FP32 RMSNorm vs float64"),
    Check("ops.softmax", "compiled_fp32", question="Inductor FP32 softmax vs float64"),
    Check("ops.rope", "compiled_fp32", question="Inductor FP32 RoPE vs float64"),
    Check("ops.sdpa", "flash", question="allclose 1e-2 vs float64"),
    Check("ops.sdpa", "efficient", question="allclose 1e-2 vs float64"),
    Check("ops.sdpa", "cudnn", question="allclose 1e-2 vs float64"),
    Check("ops.sdpa", "math", question="allclose 1e-2 vs float64"),
    Check("ops.sdpa", "flash", "efficient", EXACT, "flash vs efficient (kernel vs kernel)"),
    Check("ops.sdpa_fa", "flash", question="FlashAttention's rule"),
    Check("ops.sdpa_fa", "efficient", question="FlashAttention's rule"),
    Check("ops.sdpa_fa", "cudnn", question="FlashAttention's rule"),
)


def describe_comparator(check: Check) -> str:
    if check.comparator:
        return "exact" if check.comparator == EXACT else json.dumps(check.comparator)
    comparators = get(check.target).comparators
    return "; ".join(c.describe() for c in comparators.values())


def run_check(check: Check, args: argparse.Namespace, store: CorpusStore) -> dict[str, Any]:
    target = get(check.target)
    row: dict[str, Any] = {
        "target": check.target, "kernel": check.kernel,
        "oracle": check.oracle or target.default_oracle,
        "comparator": describe_comparator(check), "question": check.question,
    }
    config = CampaignConfig(
        target=check.target, kernel=check.kernel, oracle=check.oracle,
        comparator=check.comparator, budget=args.budget, seed=args.seed, device=args.device,
        shrink_seconds=args.shrink_seconds, profile="dev",
    )
    start = time.perf_counter()
    try:
        result = run_campaign(config, on_finding=store.record_finding)
    except KfuzzError as exc:
        return {**row, "status": "unavailable", "note": str(exc),
                "seconds": round(time.perf_counter() - start, 1)}
    shrunk = [f for f in result.findings if f.kind == "shrunk"]
    first = shrunk[0] if shrunk else None
    return {
        **row,
        "status": "findings" if result.findings else "clean",
        "examples": result.examples,
        "seconds": round(time.perf_counter() - start, 1),
        "search_seconds": round(result.seconds, 1),
        "cases_per_s": round(result.examples / result.seconds, 1) if result.seconds else None,
        "findings": len(shrunk),
        "peak_ratio": result.peak_ratio,
        "shrunk": None if first is None else {
            "id": first.fingerprint[:12], "case": first.case,
            "ratio": first.outcome.worst_ratio(), "buckets": sorted(first.outcome.buckets()),
        },
        "stopped": result.stopped,
        "note": "",
    }


# The production-size sparse-attention case (q 4x64x512, 4,096 cache rows of 512, k = 512).
PRODUCTION_ATTN = {"shape": [4, 64, 512], "q": {"kind": "normal", "scale": 1.0},
                   "kv": {"kind": "normal", "scale": 1.0}, "sink": {"kind": "normal", "scale": 1.0},
                   "index": {"n_rows": 4096, "k": 512, "n_valid": 512, "window": 128,
                             "ragged": False, "duplicates": False, "sorted": False,
                             "out_of_range": False}}


def inputs_on_device(device: str, cases: int = 30) -> dict[str, Any]:
    """Cases per second of one production-size dsv4.sparse_attn case run on `device` (kernel
    tile64 against the tile-64 golden, both on the device), with its inputs built on the host
    and copied (a version-1 case) and built on the device itself (version 2), alternating."""
    from kfuzz.cases.materialise import stamp
    from kfuzz.execute.executor import InProcessExecutor, Job

    ex = InProcessExecutor()
    rates: dict[str, list[float]] = {"host_then_copy": [], "built_on_device": []}
    for run in range(3):
        for label, case_of in (("host_then_copy", dict), ("built_on_device", stamp)):
            jobs = [Job("dsv4.sparse_attn", "tile64", "tile64",
                        case_of({**PRODUCTION_ATTN, "seed": 1000 * run + i}), None, device)
                    for i in range(cases)]
            ex.evaluate(jobs[:1])
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            ex.evaluate(jobs)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            rates[label].append(cases / (time.perf_counter() - start))
    med = {k: sorted(v)[1] for k, v in rates.items()}
    return {"cases_per_s": {k: round(v, 1) for k, v in med.items()},
            "speedup": round(med["built_on_device"] / med["host_then_copy"], 2)}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.4g}%"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"# kfuzz GPU check on {meta['device_name']} ({meta['device']})",
        "",
        f"`{meta['command']}`  ",
        f"{meta['versions']}  ",
        f"Search budget {meta['budget']} s per campaign (shrinking up to "
        f"{meta['shrink_seconds']} s more per finding), seed {meta['seed']}, total "
        f"{meta['total_seconds']} s. findings = distinct failures shrunk and stored; peak = "
        "worst mismatch ratio seen; cases/s counts the search only (compilation included).",
        "",
        "| target | kernel | oracle | comparator | question | examples | cases/s | findings "
        "| peak | shrunk case (id) | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    building = meta.get("inputs_on_device")
    for r in rows:
        shrunk = r.get("shrunk")
        case = "-" if not shrunk else f"`{json.dumps(shrunk['case'], sort_keys=True)}` ({shrunk['id']})"
        lines.append(
            f"| {r['target']} | {r['kernel']} | {r['oracle']} | {r['comparator']} | "
            f"{r['question']} | {r.get('examples', '-')} | {r.get('cases_per_s', '-')} | "
            f"{r.get('findings', '-')} | {_pct(r.get('peak_ratio'))} | {case} | "
            f"{r['status'] if r['status'] != 'findings' else ''} {r.get('note', '')} |")
    if building:
        rates = building["cases_per_s"]
        lines += ["", "Inputs of a production-size dsv4.sparse_attn case (tile64 against the tile-64 "
                  f"golden on {meta['device']}): built on the host and copied "
                  f"{rates['host_then_copy']} cases/s, built on the device "
                  f"{rates['built_on_device']} cases/s ({building['speedup']}x)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run every check; write the table, the raw JSON and the corpus. Returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--budget", type=float, default=None,
                        help="search seconds per campaign (default 8 on cuda, 4 on cpu)")
    parser.add_argument("--shrink-seconds", type=float, default=3.0)
    parser.add_argument("--max-seconds", type=float, default=280.0,
                        help="start no campaign after this many seconds (default 280)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="only these targets")
    parser.add_argument("--out", help="table path (default bench/results/gpu_check_<device>.md)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch.cuda.is_available() is False; use --device cpu")
    args.budget = args.budget or (8.0 if args.device.startswith("cuda") else 4.0)
    out = Path(args.out or f"bench/results/gpu_check_{args.device.split(':')[0]}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    db = out.with_suffix(".db")
    for stale in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        stale.unlink(missing_ok=True)

    start = time.perf_counter()
    rows = []
    with CorpusStore(db) as store:
        for check in CHECKS:
            if args.only and check.target not in args.only:
                continue
            if time.perf_counter() - start > args.max_seconds:
                rows.append({"target": check.target, "kernel": check.kernel,
                             "oracle": check.oracle or get(check.target).default_oracle,
                             "comparator": describe_comparator(check), "question": check.question,
                             "status": "skipped", "note": f"--max-seconds {args.max_seconds} spent"})
                continue
            rows.append(run_check(check, args, store))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "shrunk"}), flush=True)
    building = inputs_on_device(args.device, cases=30 if args.device.startswith("cuda") else 3)
    print(json.dumps({"inputs_on_device": building}), flush=True)
    info = versions(args.device)
    meta = {
        "command": "python bench/gpu_check.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
            if v is not None and k not in ("out", "only")),
        "device": args.device, "device_name": info["device"], "budget": args.budget,
        "shrink_seconds": args.shrink_seconds, "seed": args.seed,
        "total_seconds": round(time.perf_counter() - start, 1),
        "versions": ", ".join(f"{k} {v}" for k, v in sorted(info.items()) if k != "device")
                    + f", {torch.get_num_threads()} CPU threads",
        "inputs_on_device": building,
    }
    out.write_text(markdown(rows, meta))
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}, {out.with_suffix('.json')} and the corpus {db} "
          f"in {meta['total_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

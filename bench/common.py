"""What every benchmark script shares: one thread, the machine description, medians, the
JSON result file and its command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def single_thread() -> None:
    """Pin torch to one intra-op thread, so that timings do not depend on how many cores the
    other users of a shared machine leave free."""
    torch.set_num_threads(1)


def parser(doc: str, default_out: str) -> argparse.ArgumentParser:
    """An argument parser with the options every script has: --quick (a smoke-sized run) and
    --out (the JSON result path, default bench/results/`default_out`)."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="a small run that checks the script works; its numbers mean little")
    p.add_argument("--out", default=str(RESULTS / default_out), metavar="PATH",
                   help=f"where to write the JSON result (default bench/results/{default_out})")
    return p


def page_faults() -> int:
    """Minor page faults of this process so far (fresh pages the kernel mapped in)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine and software a result was measured on (CPU model and cores, OS, Python,
    torch, Hypothesis, torch threads) and the load average when this is called."""
    import hypothesis

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "hypothesis": hypothesis.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def command(argv: Sequence[str] | None = None) -> str:
    """The command line that reproduces this run, as `python -m bench.NAME ARGS` (without
    --out, which only moves the file)."""
    args = list(sys.argv[1:] if argv is None else argv)
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--out":
            skip = True
            continue
        if arg.startswith("--out="):
            continue
        kept.append(arg)
    module = Path(sys.argv[0]).stem
    return " ".join(["python -m bench." + module, *kept])


def write(path: str | Path, doc: dict[str, Any]) -> None:
    """Write `doc` as indented JSON to `path` with the date, the machine and the command
    added, creating the folder."""
    full = {"command": command(), "date": dt.date.today().isoformat(), "machine": machine(),
            **doc}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    print(f"wrote {out}")


def median(values: Sequence[float]) -> float:
    """The median of `values`. Raises statistics.StatisticsError when empty."""
    return float(statistics.median(values))


def run_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Detections of bench.bug_finding's runs of one method on one fault (a detection counts
    only where the correct kernel passes the case), with the medians over them: cases and
    seconds to detection, and the failing case's size."""
    hits = [r for r in runs if r["detected"] and r.get("reference_passes", True)]
    out: dict[str, Any] = {"detected": len(hits), "runs": len(runs)}
    if hits:
        out["median_examples"] = median([r["examples"] for r in hits])
        out["median_seconds"] = median([r["seconds_to_detect"] for r in hits])
        sizes = [r["size"] for r in hits if r.get("size") is not None]
        if sizes:
            out["median_size"] = median(sizes)
            out["max_size"] = max(sizes)
    return out


class Recording:
    """An in-process executor (`kfuzz.execute.executor.InProcessExecutor`) that keeps every
    job it runs (`jobs`) and counts the failed outcomes (`failed`): what a timed campaign ran,
    to be run again by another loop."""

    def __init__(self) -> None:
        from kfuzz.execute.executor import InProcessExecutor

        self.inner = InProcessExecutor()
        self.jobs: list[Any] = []
        self.failed = 0

    def evaluate(self, jobs: Sequence[Any]) -> list[Any]:
        self.jobs.extend(jobs)
        outcomes = self.inner.evaluate(jobs)
        self.failed += sum(o.failed for o in outcomes)
        return outcomes

    def close(self) -> None:
        self.inner.close()


def executor_loop(jobs: Sequence[Any]) -> float:
    """Seconds to run `jobs` (of one target, kernel and oracle) through
    `kfuzz.execute.executor.run_case` in a plain loop, each batch's copies built together as
    the executor builds them (`seed_copies`): kfuzz's executor without its search."""
    import time

    from kfuzz.execute.executor import InProcessExecutor, run_case, seed_copies

    target, kernel, oracle = InProcessExecutor().resolve(jobs[0])
    start = time.perf_counter()
    for job, copy in zip(jobs, seed_copies(jobs), strict=True):
        run_case(target, kernel, oracle, job, copy)
    return time.perf_counter() - start

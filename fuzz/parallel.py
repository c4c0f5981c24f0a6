"""Campaigns in parallel worker processes, all writing to one corpus.

Each process runs whole campaigns (one target, or one seed shard of a target) and writes its
findings to the shared corpus as it finds them (WAL, short transactions, upsert by fingerprint),
so a killed process loses nothing it had stored. The parent gathers the campaign results.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from typing import Any

from kfuzz.search import CampaignConfig, CampaignResult

SHARD_SEED_STRIDE = 1_000_003


def shard(configs: Sequence[CampaignConfig], workers: int) -> list[CampaignConfig]:
    """Split campaigns so that `workers` processes have work: with fewer campaigns than
    workers, each campaign becomes seed shards (seed + k * stride) sharing its example
    budget; its time budget stays per shard, since shards run side by side."""
    if len(configs) >= workers:
        return list(configs)
    out = []
    per = -(-workers // len(configs))
    for config in configs:
        for k in range(per):
            examples = config.max_examples and max(1, config.max_examples // per)
            seed = None if config.seed is None else config.seed + k * SHARD_SEED_STRIDE
            out.append(replace(config, seed=seed, max_examples=examples))
    return out


def _run_one(config: CampaignConfig, db: str, run_id: int, isolate: bool,
             case_timeout: float | None, plugins: list[str], threads: int) -> CampaignResult:
    import torch

    # Each process gets its share of the cores: torch's default (one thread per core) in
    # every process oversubscribes them, and its spinning threads then slow all down.
    torch.set_num_threads(threads)
    from kfuzz import targets as registry
    from kfuzz.corpus import CorpusStore
    from kfuzz.executor import InProcessExecutor
    from kfuzz.search import run_campaign

    for plugin in plugins:
        registry.load_plugin(plugin)
    executor: Any = InProcessExecutor()
    if isolate:
        from kfuzz.isolation import IsolatedExecutor

        executor = IsolatedExecutor(case_timeout=case_timeout, plugins=plugins)
    with CorpusStore(db) as store:
        try:
            return run_campaign(config, executor=executor,
                                on_finding=lambda f: store.record_finding(f, run_id=run_id))
        finally:
            executor.close()


def run_parallel(configs: Sequence[CampaignConfig], *, workers: int, db: str, run_id: int,
                 isolate: bool = False, case_timeout: float | None = None,
                 plugins: Sequence[str] = (), on_done: Any = None) -> list[CampaignResult]:
    """Run `configs` (sharded by `shard`) in `workers` processes; returns their results in
    completion order. `on_done(result)` is called as each campaign ends."""
    jobs = shard(configs, workers)
    results = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        threads = max(1, (os.cpu_count() or 1) // min(workers, len(jobs)))
        futures = [pool.submit(_run_one, c, db, run_id, isolate, case_timeout, list(plugins),
                               threads) for c in jobs]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            if on_done:
                on_done(result)
    return results

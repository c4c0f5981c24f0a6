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

from kfuzz.errors import KfuzzError
from kfuzz.run.campaigns import CampaignRun, RunContext, run_one
from kfuzz.run.executors import ExecutorSpec
from kfuzz.search.campaign import CampaignConfig

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


def _run_one(config: CampaignConfig, spec: ExecutorSpec, db: str | None, run_id: int | None,
             skip_unavailable: bool, threads: int) -> CampaignRun:
    import torch

    # Each process gets its share of the cores: torch's default (one thread per core) in
    # every process oversubscribes them, and its spinning threads then slow all down.
    torch.set_num_threads(threads)
    from kfuzz.store.corpus import CorpusStore
    from kfuzz.targets import registry

    for plugin in spec.plugins:
        registry.load_plugin(plugin)
    store = CorpusStore(db) if db is not None else None
    executor = spec.build()
    try:
        return run_one(config, executor, skip_unavailable=skip_unavailable,
                       on_finding=None if store is None
                       else (lambda f: store.record_finding(f, run_id=run_id)))
    finally:
        executor.close()
        if store is not None:
            store.close()


def run_parallel(configs: Sequence[CampaignConfig], context: RunContext) -> list[CampaignRun]:
    """Run `configs`, sharded by `shard`, in `context.workers` processes, each writing its
    findings to the corpus as it finds them. See `kfuzz.run.campaigns.Runner`."""
    jobs = shard(configs, context.workers)
    context_mp = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=context.workers, mp_context=context_mp) as pool:
        threads = max(1, (os.cpu_count() or 1) // min(context.workers, len(jobs)))
        futures = {pool.submit(_run_one, c, context.executor, context.db, context.run_id,
                               context.skip_unavailable, threads): c for c in jobs}
        for future in as_completed(futures):
            try:
                run = future.result()
            except KfuzzError as exc:
                if not context.keep_going:
                    raise
                run = CampaignRun(futures[future], failed=str(exc))
            context.finished(run)
    return context.runs

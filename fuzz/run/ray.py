"""Campaigns as Ray tasks, with this process as the single corpus writer.

`run_on_ray` splits the campaigns with `kfuzz.run.parallel.shard`, runs each shard as a Ray task
(one GPU per task when the run is on cuda, one CPU otherwise) and stores each shard's findings
in the corpus when that shard ends, while the others still run. Tasks never open the corpus:
they may run on machines that cannot see its file, and one writer means no lock contention.
The price is that a shard's findings reach the corpus when the shard ends, not as each is
found, so a shard that dies loses what it had found; the other shards lose nothing.

Each task gets the driver's sys.path and `--plugin`s, so that plugins and `--kernel
module:function` resolve there as they do here. On a cluster of several machines, kfuzz and
those modules must be installed (or on the same paths) on every node.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kfuzz.errors import KfuzzError
from kfuzz.execute.findings import Finding
from kfuzz.run.campaigns import CampaignRun, RunContext, run_one
from kfuzz.run.executors import ExecutorSpec
from kfuzz.run.parallel import shard
from kfuzz.search.campaign import CampaignConfig

MISSING_RAY = "--ray needs the ray extra: pip install -e '.[ray]'"


def require_ray() -> Any:
    """Import ray; returns the module. Raises KfuzzError naming the extra to install when
    ray is not installed."""
    try:
        import ray
    except ImportError:
        raise KfuzzError(MISSING_RAY) from None
    return ray


def _campaign_task(config: CampaignConfig, spec: ExecutorSpec, skip_unavailable: bool,
                   driver_path: list[str]) -> tuple[CampaignRun, list[Finding]]:
    """Run one campaign in a Ray worker; returns its CampaignRun and every finding in the
    order the campaign reported them (raw ones included, so that the corpus sees what an
    in-process run would have stored)."""
    # Driver entries first, as the driver resolves names; the worker's own stay behind them.
    sys.path[:0] = [entry for entry in driver_path if entry not in sys.path]
    from kfuzz.targets import registry

    for plugin in spec.plugins:
        registry.load_plugin(plugin)
    executor = spec.build()
    found: list[Finding] = []
    try:
        run = run_one(config, executor, on_finding=found.append,
                      skip_unavailable=skip_unavailable)
    finally:
        executor.close()
    return run, found


@contextmanager
def _connected(ray: Any, address: str | None) -> Iterator[None]:
    """Use the Ray instance this process already joined, else join `address` (see
    `run_on_ray`) for the length of the block."""
    if ray.is_initialized():
        yield
        return
    # Worker output would interleave with --json on stdout; task errors come back as
    # exceptions anyway.
    options: dict[str, Any] = {"log_to_driver": False}
    if address is None:
        options["include_dashboard"] = False
    environ = dict(os.environ)
    try:
        ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise KfuzzError(
            f"--ray-address {address}: cannot join a Ray cluster ({exc}); start one with "
            "`ray start --head`, or leave --ray-address out for a local instance"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()
        _restore(environ)


def _restore(environ: dict[str, str]) -> None:
    # ray.init sets variables that outlive shutdown (PYTHONBREAKPOINT among them), which
    # every later child process of this one would inherit.
    for name in set(os.environ) - set(environ):
        del os.environ[name]
    os.environ.update(environ)


def _portable(plugins: Sequence[str]) -> list[str]:
    # A relative plugin file resolves against the driver's directory, not the worker's.
    return [str(Path(p).resolve()) if p.endswith(".py") and Path(p).is_file() else p
            for p in plugins]


def _driver_path() -> list[str]:
    # "" means "the current directory", which a worker would read as its own.
    return [os.getcwd() if entry == "" else entry for entry in sys.path]


def _describe(config: CampaignConfig) -> str:
    return f"shard {config.target} seed {config.seed}"


def run_on_ray(configs: Sequence[CampaignConfig], context: RunContext) -> list[CampaignRun]:
    """Run `configs`, sharded by `kfuzz.run.parallel.shard` into `context.workers` shards, as Ray
    tasks; store each shard's findings in `context.store` (one transaction per shard, under
    `context.run_id`) as the shard ends. See `kfuzz.run.campaigns.Runner`.

    context.address: a Ray cluster to join ("auto", "HOST:PORT", "ray://HOST:PORT"); None
    joins the one RAY_ADDRESS names or `ray start` last made here, else starts a local instance
    for the call (Ray's own rule). A Ray instance this process already joined is used as is.
    Raises KfuzzError when ray is not installed, the cluster cannot be joined, the run is on
    cuda and the cluster has no GPU, a task reports a configuration problem (raised at once),
    or a task died (raised once every other shard has ended and been stored)."""
    ray = require_ray()
    jobs = shard(configs, context.workers)
    with _connected(ray, context.address):
        device = jobs[0].device if jobs else "cpu"
        if device.startswith("cuda"):
            gpus = ray.cluster_resources().get("GPU", 0)
            if gpus < 1:
                raise KfuzzError(
                    f"--device {device}: the Ray cluster has no GPU "
                    f"(resources: {sorted(ray.cluster_resources())}); use --device cpu "
                    "or join a cluster with GPUs (--ray-address)"
                )
            resources: dict[str, Any] = {"num_gpus": 1}
        else:
            resources = {"num_cpus": 1}
        # No retries: a task dies only when its kernel takes the worker down, and it would
        # again; --isolate turns such a crash into a finding instead.
        task = ray.remote(_campaign_task).options(max_retries=0, **resources)
        spec = dataclasses.replace(context.executor,
                                   plugins=tuple(_portable(context.executor.plugins)))
        args = (spec, context.skip_unavailable, _driver_path())
        pending = {task.remote(config, *args): config for config in jobs}
        died: list[str] = []
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    config = pending.pop(ref)
                    try:
                        run, found = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        if isinstance(exc.cause, KfuzzError):
                            raise exc.cause from None
                        raise
                    except ray.exceptions.RayError as exc:
                        died.append(f"{_describe(config)}: {type(exc).__name__}")
                        continue
                    if context.store is not None:
                        context.store.record_findings(found, run_id=context.run_id)
                    context.finished(run)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
    if died:
        raise KfuzzError(
            f"{len(died)} Ray task(s) died ({'; '.join(died)}); rerun with --isolate so that a "
            "kernel that crashes its worker becomes a finding"
        )
    return context.runs

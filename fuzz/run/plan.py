"""The plan of a run: the options (`RunOptions`, one field per `kfuzz run` flag), the targets
selected, the device, comparator, kernels, oracles and pins checked before anything is stored,
the budget's shares, and the executor spec."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kfuzz.errors import KernelUnavailable, KfuzzError, OptionError
from kfuzz.run.executors import ExecutorSpec
from kfuzz.search.campaign import CampaignConfig
from kfuzz.settings import DEFAULT_CASE_TIMEOUT, PROFILES
from kfuzz.targets import registry

DEVICES = ("cpu", "cuda")


@dataclass
class RunOptions:
    """Everything a run is asked to do, by field; `kfuzz run`'s flags map onto these one to
    one. targets: names (or `all`: every target in `--all`, skipping those whose kernel cannot
    run here). campaign: what every campaign does, a `kfuzz.search.CampaignConfig` whose
    target is ignored; its comparator may also be a mode name or a `Comparator` (see
    `comparator_overrides`). workers, ray, ray_address: where the campaigns run; isolate,
    case_timeout, plugins: how their executors are built (`ExecutorSpec`)."""

    targets: Sequence[str] = ()
    all: bool = False
    campaign: CampaignConfig = field(default_factory=lambda: CampaignConfig(target=""))
    workers: int = 1
    ray: bool = False
    ray_address: str | None = None
    isolate: bool = False
    case_timeout: float | None = None
    plugins: Sequence[str] = ()




def select_targets(names: Sequence[str], *, all: bool = False) -> list[str]:
    """The targets a run fuzzes: `names`, or with `all` every target marked in_all. Raises
    KfuzzError for both or neither, UnknownTarget for an unknown name."""
    if all:
        if names:
            raise KfuzzError("give target names or --all, not both")
        return [name for name, t in registry.all_targets().items() if t.in_all]
    if not names:
        raise KfuzzError("no target given; name one (see `kfuzz targets`) or pass --all")
    for name in names:
        registry.get(name)
    return list(names)


def check_device(device: str) -> None:
    """Raises OptionError unless `device` is cpu, or cuda[:N] on a machine with that GPU."""
    kind, _, index = device.partition(":")
    if kind not in DEVICES or (kind == "cpu" and index) or (index and not index.isdigit()):
        raise OptionError("device", device, f": kfuzz runs kernels on cpu or cuda (cuda:N), "
                          f"not {device!r}")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise OptionError("device", device, f": torch.cuda.is_available() is False on this "
                              f"machine (torch {torch.__version__}); use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise OptionError("device", device, f": this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")


def comparator_overrides(comparator: Any) -> dict[str, Any] | None:
    """Comparator fields to override every output's default with: None, a mode name
    ("exact"), a dict of fields, or a `Comparator` (all its fields). Raises ComparatorError
    for a bad combination."""
    from kfuzz.judge.comparator import Comparator

    if comparator is None:
        return None
    if isinstance(comparator, str):
        comparator = {"mode": comparator}
    elif isinstance(comparator, Comparator):
        comparator = comparator.to_dict()
    overrides = dict(comparator)
    # Validate the combination now, against a neutral base, for a one-line error.
    Comparator.from_dict({**Comparator(mode=overrides.get("mode", "allclose")).to_dict(),
                          **overrides})
    return overrides or None


def _check_callables(campaign: CampaignConfig, names: Sequence[str], in_worker: bool) -> None:
    from kfuzz.targets.declare import declared

    for role in ("kernel", "oracle"):
        name = getattr(campaign, role)
        if name and registry.is_local(name) and in_worker:
            raise OptionError(role, name, " exists only in this process (a lambda or a nested "
                              "function); define it at module level to run it in a worker")
    for target_name in names:
        if in_worker and declared(target_name) and not registry.plugins_for(target_name):
            raise OptionError("target", target_name, " was declared in this process only; "
                              "declare it in a module and pass that as a plugin to run it in "
                              "a worker")
    if campaign.kernel is None:
        for target_name in names:
            if not registry.get(target_name).kernels:
                raise OptionError("kernel", None, f": target {target_name!r} has no kernel of "
                                  "its own; pass one (--kernel module:function)")
    # An unknown kernel or oracle is refused before the corpus is opened (a run refused at
    # set-up writes nothing); one that cannot run here is the campaign's to skip.
    for target_name in names:
        target = registry.get(target_name)
        for role, name in (("kernel", campaign.kernel or target.default_kernel),
                           ("oracle", campaign.oracle or target.default_oracle)):
            try:
                registry.resolve(target, role, name)
            except KernelUnavailable:
                pass


def plan(options: RunOptions) -> tuple[list[CampaignConfig], ExecutorSpec]:
    """Check `options` and turn them into campaigns and an executor spec, touching no corpus.
    Raises KfuzzError (OptionError naming the field) for anything that cannot run."""
    for plugin in options.plugins:
        registry.load_plugin(plugin)
    names = select_targets(options.targets, all=options.all)
    if options.workers < 1:
        raise OptionError("workers", options.workers, " must be at least 1")
    template = options.campaign
    ray = options.ray or bool(options.ray_address)
    if ray:
        from kfuzz.run.ray import require_ray

        require_ray()  # the device is checked against the cluster, not this machine
    else:
        check_device(template.device)
    profile = PROFILES[template.profile]
    isolate = bool(options.isolate or options.case_timeout or profile.isolate)
    _check_callables(template, names, isolate or ray or options.workers > 1)
    seed = template.seed
    if seed is None and (options.workers > 1 or ray):
        # One seed for every shard, so that they derive distinct ones from it.
        seed = profile.fixed_seed if profile.fixed_seed is not None else random.randrange(2**32)
    # With workers the campaigns run side by side, each with the budget they share (the
    # sequential runner shares what is left as each campaign ends). A campaign's share bounds
    # its shrinking too.
    budget = template.budget
    share = budget and budget * min(options.workers, len(names)) / len(names)
    configs = [dataclasses.replace(template, target=name, seed=seed, budget=share or None,
                                   time_limit=share or None,
                                   comparator=comparator_overrides(template.comparator))
               for name in names]
    if template.pins:
        from kfuzz.cases.pins import check_pins
        from kfuzz.search.campaign import HypothesisStorage

        with HypothesisStorage():  # the check draws cases: no .hypothesis/ in the cwd
            for config in configs:
                target = registry.get(config.target)
                check_pins(target, template.pins, config.max_numel or target.max_numel)
    configs = [_within_dtypes(config) for config in configs]
    spec = ExecutorSpec(isolate=isolate,
                        case_timeout=options.case_timeout or (DEFAULT_CASE_TIMEOUT if isolate
                                                              else None),
                        plugins=tuple(options.plugins))
    return configs, spec


def _within_dtypes(config: CampaignConfig) -> CampaignConfig:
    """`config` with its "dtype" field held within the dtypes its kernel (and an oracle that
    is a kernel variant) implements (`kfuzz.cases.pins.dtype_pin`), so that the search draws
    no case the kernel does not implement; the summary lists what that left out. A kernel
    that cannot be resolved here is left to the campaign. Raises OptionError for a pinned
    dtype the kernel does not implement, or no dtype in common."""
    target = registry.get(config.target)
    variants = []
    for role, name in (("kernel", config.kernel or target.default_kernel),
                       ("oracle", config.oracle or target.default_oracle)):
        try:
            variants.append(registry.resolve(target, role, name))
        except KfuzzError:
            continue
    if all(v.dtypes is None for v in variants):
        return config
    from kfuzz.cases.pins import dtype_pin
    from kfuzz.search.campaign import HypothesisStorage

    pins = dict(config.pins or {})
    with HypothesisStorage():  # the check draws cases: no .hypothesis/ in the cwd
        pin = dtype_pin(target, variants, pins, config.max_numel or target.max_numel)
    if pin is None:
        return config
    return dataclasses.replace(config, pins={**pins, "dtype": pin})


def reserve(budget: float) -> float:
    """Seconds of a run's budget kept back for what follows the campaigns (the closest
    call's metrics, storing the run, the summary)."""
    return min(1.0, 0.05 * budget)

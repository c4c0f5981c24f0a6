"""The plan of a run: the options (`RunOptions`, one field per `kfuzz run` flag), the targets
selected, the device, comparator, kernels, oracles and pins checked before anything is stored,
the budget's shares, and the executor spec."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kfuzz.errors import KernelUnavailable, KfuzzError, OptionError, UnknownVariant
from kfuzz.run.executors import ExecutorSpec
from kfuzz.search.campaign import CampaignConfig
from kfuzz.settings import DEFAULT_CASE_TIMEOUT, PROFILES
from kfuzz.targets import registry

DEVICES = ("cpu", "cuda")


@dataclass
class RunOptions:
    """Everything a run is asked to do, by field; `kfuzz run`'s flags map onto these one to
    one. targets: run entries, each a target's name or "TARGET@KERNEL" (or `all`: every
    target in `--all` and its library kernels, skipping those that cannot run here; see
    `select_targets`). campaign: what every campaign does, a `kfuzz.search.CampaignConfig` whose
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


def split_entry(entry: str) -> tuple[str, str | None]:
    """A run entry as (target, kernel): "TARGET@KERNEL" names a kernel of the target,
    "TARGET" alone its default kernel (or --kernel's), kernel None."""
    target, at, kernel = entry.partition("@")
    return target, (kernel if at else None)


def select_targets(names: Sequence[str], *, all: bool = False,
                   kernel: str | None = None) -> list[str]:
    """The entries a run fuzzes, each a campaign of its own: `names` (a target's name, or
    "TARGET@KERNEL" for one of its kernels), or with `all` every target marked in_all with
    its default kernel and, unless `kernel` (--kernel) names the kernel of every target,
    "TARGET@KERNEL" for each of its third-party library kernels (`Variant.library`). Raises
    KfuzzError for both or neither, an entry missing its target or kernel, or an entry naming
    its kernel beside --kernel; UnknownTarget or UnknownVariant for a name no target or
    kernel has."""
    if all:
        if names:
            raise KfuzzError("give target names or --all, not both")
        entries = []
        for name, target in registry.all_targets().items():
            if target.in_all:
                entries.append(name)
                entries += [f"{name}@{k}" for k, v in target.kernels.items()
                            if v.library and kernel is None and k != target.default_kernel]
        return entries
    if not names:
        raise KfuzzError("no target given; name one (see `kfuzz targets`) or pass --all")
    for entry in names:
        target_name, kernel_name = split_entry(entry)
        if kernel_name is None:
            registry.get(entry)
            continue
        if not target_name or not kernel_name:
            raise KfuzzError(f"run entry {entry!r} lacks its {'kernel' if target_name else 'target'}"
                             "; write TARGET@KERNEL, e.g. ops.softmax@ort_softmax (kernels: "
                             "`kfuzz targets TARGET`)")
        if kernel is not None:
            raise KfuzzError(f"run entry {entry!r} names its kernel and --kernel {kernel} names "
                             f"another; drop --kernel, or name the target alone ({target_name})")
        try:
            registry.resolve(registry.get(target_name), "kernel", kernel_name)
        except KernelUnavailable:
            pass  # the campaign's to skip or stop with
        except UnknownVariant as exc:
            raise KfuzzError(f"run entry {entry!r}: {exc}") from None
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


def _check_callables(configs: Sequence[CampaignConfig], in_worker: bool) -> None:
    from kfuzz.targets.declare import declared

    for config in configs:
        for role in ("kernel", "oracle"):
            name = getattr(config, role)
            if name and registry.is_local(name) and in_worker:
                raise OptionError(role, name, " exists only in this process (a lambda or a "
                                  "nested function); define it at module level to run it in a "
                                  "worker")
        if in_worker and declared(config.target) and not registry.plugins_for(config.target):
            raise OptionError("target", config.target, " was declared in this process only; "
                              "declare it in a module and pass that as a plugin to run it in "
                              "a worker")
        target = registry.get(config.target)
        if config.kernel is None and not target.kernels:
            raise OptionError("kernel", None, f": target {config.target!r} has no kernel of "
                              "its own; pass one (--kernel module:function)")
    # An unknown kernel or oracle is refused before the corpus is opened (a run refused at
    # set-up writes nothing); one that cannot run here is the campaign's to skip.
    for config in configs:
        target = registry.get(config.target)
        for role, name in (("kernel", config.kernel or target.default_kernel),
                           ("oracle", config.oracle or target.default_oracle)):
            try:
                registry.resolve(target, role, name)
            except KernelUnavailable:
                pass


def plan(options: RunOptions) -> tuple[list[CampaignConfig], ExecutorSpec]:
    """Check `options` and turn them into campaigns and an executor spec, touching no corpus.
    Raises KfuzzError (OptionError naming the field) for anything that cannot run."""
    for plugin in options.plugins:
        registry.load_plugin(plugin)
    entries = select_targets(options.targets, all=options.all, kernel=options.campaign.kernel)
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
    seed = template.seed
    if seed is None and (options.workers > 1 or ray):
        # One seed for every shard, so that they derive distinct ones from it.
        seed = profile.fixed_seed if profile.fixed_seed is not None else random.randrange(2**32)
    # With workers the campaigns run side by side, each with the budget they share (the
    # sequential runner shares what is left as each campaign ends). A campaign's share bounds
    # its shrinking too.
    budget = template.budget
    share = budget and budget * min(options.workers, len(entries)) / len(entries)
    configs = []
    for entry in entries:
        target, kernel = split_entry(entry)
        configs.append(dataclasses.replace(
            template, target=target, kernel=kernel or template.kernel,
            entry=entry if kernel else None, seed=seed, budget=share or None,
            time_limit=share or None, comparator=comparator_overrides(template.comparator)))
    _check_callables(configs, isolate or ray or options.workers > 1)
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

"""`kfuzz.chain`: a chain of kernels declared as a target. Its stages each have kernels, goldens
and comparators; its wiring is plain Python, `wiring(stages, **inputs, **params)`, calling the
stages it is handed. The chain IS a target (one registry, one search, shrink and corpus): its
kernels are the wiring with a kernel chosen per stage, its goldens the wiring with a golden per
stage, both named "stage=choice,..." (stages left out at their defaults), and a failure carries
the stages that fail on their own inputs, so that shrinking keeps the blame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from kfuzz.chains.evaluate import ChainCall, Stages, local_features
from kfuzz.chains.stages import GOLDEN, KERNEL, Choices, Stage, from_target, named
from kfuzz.errors import PluginError
from kfuzz.targets.registry import Target, Variant


class Chain:
    """A chain's stages (name -> `Stage`, in call order), its wiring and its name."""

    def __init__(self, name: str, stages: Mapping[str, Stage],
                 wiring: Callable[..., Any]) -> None:
        self.name, self.stages, self.wiring = name, dict(stages), wiring

    def run(self, choices: Mapping[str, str], kwargs: Mapping[str, Any], device: str,
            on_call: Callable[[str, dict[str, Any], Any], None] | None = None) -> Any:
        """The wiring's result with each stage at its choice (kernels on `device`)."""
        return self.wiring(Stages(self.stages, choices, device, on_call), **kwargs)

    def variant(self, role: str, choices: Mapping[str, str], name: str) -> Variant:
        """The chain kernel or golden (`role`) running each stage at `choices`."""
        doc = ", ".join(f"{k} {v}" for k, v in choices.items())
        return Variant(name, ChainCall(self, role, choices), doc)

    def features(self, inputs: Mapping[str, Any], actual: Mapping[str, Any],
                 expected: Mapping[str, Any]) -> dict[str, float]:
        """`Target.features`: see `kfuzz.chains.evaluate.local_features`."""
        return local_features(self, inputs, actual, expected)

    def choices(self, role: str, defaults: Mapping[str, str] | None = None) -> Choices:
        """The chain's kernels (`role` KERNEL) or goldens as a target's variants."""
        base = {k: (s.default_kernel if role == KERNEL else s.default_golden)
                for k, s in self.stages.items()}
        return Choices(role, self.stages, self.variant, {**base, **(defaults or {})})


_CHAINS: dict[str, Chain] = {}


def chain_of(target: Target) -> Chain | None:
    """The chain behind `target`, or None when it is no chain."""
    return _CHAINS.get(target.name) if isinstance(target.kernels, Choices) else None


def _stages(name: str, stages: Mapping[str, Any]) -> dict[str, Stage]:
    from kfuzz.targets import registry

    if not stages:
        raise PluginError(f"chain {name!r}: declare at least one stage")
    out = {}
    for key, spec in stages.items():
        if not key.isidentifier():
            raise PluginError(f"chain {name!r}: stage name {key!r} must be an identifier")
        if isinstance(spec, str):
            out[key] = from_target(registry.get(spec), key)
        elif isinstance(spec, Target):
            out[key] = from_target(spec, key)
        elif isinstance(spec, Stage):
            out[key] = named(spec, key)
        else:
            raise PluginError(f"chain {name!r}: stage {key!r} must be a target name, a Target "
                              f"or kfuzz.stage(...), not {type(spec).__name__}")
    return out


def as_chain(built: Target, stages: Mapping[str, Any], wiring: Callable[..., Any], *,
             kernel: Mapping[str, str] | None = None, golden: Mapping[str, str] | None = None,
             register: bool = True) -> Target:
    """`built` (a target declared with a placeholder oracle) made the chain of `stages` and
    `wiring`: its kernels, goldens and features replaced; registered unless `register=False`.
    kernel, golden: stage -> choice, the defaults where they differ from each stage's own."""
    from kfuzz.chains.attribution import Attributor
    from kfuzz.targets import registry
    from kfuzz.targets.declare import declared, mark_declared

    if not callable(wiring):
        raise PluginError(f"chain {built.name!r}: wiring must be a callable "
                          "wiring(stages, **inputs, **params)")
    made = Chain(built.name, _stages(built.name, stages), wiring)
    kernels, goldens = made.choices(KERNEL, kernel), made.choices(GOLDEN, golden)
    for pool in (kernels, goldens):
        for key, choice in pool.defaults.items():
            made.stages[key].variant(choice)  # a bad default fails now, naming it
    target = dataclasses.replace(
        built, kernels=kernels, oracles=goldens, default_kernel=kernels.default,
        default_oracle=goldens.default, features=made.features, attribute=Attributor(made),
        doc=built.doc if built.doc != "chain" else f"chain {' -> '.join(made.stages)}")
    _CHAINS[target.name] = made
    if register:
        registry.register(target, replace=declared(target.name))
        mark_declared(target.name)
    return target


def placeholder(**kwargs: Any) -> Any:
    """chain: stands in for the golden until `as_chain` replaces it."""
    raise PluginError("a chain's golden runs through its stages")


def chain(name: str, *, stages: Mapping[str, Any], wiring: Callable[..., Any],
          inputs: Mapping[str, Any], outputs: Any = None, params: Mapping[str, Any] | None = None,
          comparator: Any = None, dims: Mapping[str, tuple[int, int]] | None = None,
          kernel: Mapping[str, str] | None = None, golden: Mapping[str, str] | None = None,
          doc: str = "", register: bool = True, **options: Any) -> Target:
    """Declare (and register, unless `register=False`) a chain of kernels; returns its Target.

    stages: name -> `kfuzz.stage(...)`, a registered target's name or a Target (its kernels,
    oracles and comparators), in call order. wiring: `wiring(stages, **inputs, **params)`
    returning the chain's outputs, calling `stages.NAME(**kwargs)`. inputs, outputs, params,
    comparator (the chain's outputs), dims, doc and max_numel: as for `kfuzz.target`. kernel,
    golden: stage -> choice for the defaults (else each stage's first). Kernels and goldens are
    named "stage=choice,..." (`--kernel norm=fast`). Raises PluginError."""
    from kfuzz.targets.declare import target

    built = target(name, inputs=inputs, oracle={"chain": placeholder}, outputs=outputs,
                   params=params, comparator=comparator, dims=dims, doc=doc or "chain",
                   register=False, **options)
    return as_chain(built, stages, wiring, kernel=kernel, golden=golden, register=register)

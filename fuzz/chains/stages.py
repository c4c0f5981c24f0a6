"""The stages of a chain: each a named step with its kernels, its goldens and a comparator per
output, and the choices a chain kernel or golden makes, one per stage ("q=fast,attn=tile64").

A stage is declared inline (`stage`) or taken from a registered target (`from_target`), whose
kernels, oracles and comparators it reuses. Imports no torch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kfuzz.errors import PluginError
from kfuzz.targets.registry import Target, Variant
from kfuzz.targets.specs import as_variants

KERNEL, GOLDEN = "kernel", "golden"


@dataclass(frozen=True)
class Stage:
    """One stage: kernels and goldens by name (a stage may run any of them, either role), the
    default of each, and a comparator per output, in the order a tuple-returning stage gives
    them."""

    name: str
    kernels: Mapping[str, Variant]
    goldens: Mapping[str, Variant]
    comparators: Mapping[str, Any]
    default_kernel: str
    default_golden: str
    source: str = ""

    @property
    def outputs(self) -> list[str]:
        """Output names, in order."""
        return list(self.comparators)

    def variant(self, choice: str) -> Variant:
        """The kernel or golden called `choice` (goldens first). Raises PluginError."""
        for pool in (self.goldens, self.kernels):
            if choice in pool:
                return pool[choice]
        raise PluginError(f"stage {self.name!r} has no kernel or golden {choice!r}; choose from "
                          f"{', '.join(dict.fromkeys([*self.kernels, *self.goldens]))}")


def stage(*, kernels: Any = None, golden: Any, comparator: Any = None,
          outputs: Any = ("y",), name: str = "") -> Stage:
    """A stage declared inline, for `kfuzz.chain`. kernels, golden: a callable, or name ->
    callable, "module:function" reference or `variant(...)` (the first is the default);
    comparator: a `Comparator` for every output or output -> Comparator (default: allclose
    with torch.testing's tolerances per dtype); outputs: output names in the order a
    tuple-returning stage gives them. Raises PluginError."""
    from kfuzz.judge.comparator import Comparator

    goldens = as_variants("oracle", golden, name or "stage")
    found = as_variants("kernel", kernels, name or "stage")
    if not goldens:
        raise PluginError("kfuzz.stage: give a golden (a callable, or a dict of them)")
    names = [outputs] if isinstance(outputs, str) else list(outputs)
    if isinstance(comparator, Mapping):
        if set(comparator) != set(names):
            raise PluginError(f"kfuzz.stage: comparator keys {sorted(comparator)} do not match "
                              f"the outputs {names}")
        comparators = {o: comparator[o] for o in names}
    else:
        comparators = {o: comparator or Comparator() for o in names}
    return Stage(name, found, goldens, comparators, next(iter(found), next(iter(goldens))),
                 next(iter(goldens)))


def from_target(target: Target, name: str) -> Stage:
    """The stage `name` that runs `target`'s kernels and oracles, judged by its comparators."""
    return Stage(name, target.kernels, target.oracles, target.comparators,
                 target.default_kernel or target.default_oracle, target.default_oracle,
                 source=target.name)


def named(stage_: Stage, name: str) -> Stage:
    """`stage_` under the name `name` (a stage declared without one takes its key's)."""
    from dataclasses import replace

    return stage_ if stage_.name == name else replace(stage_, name=name)


def parse_choices(text: str, stages: Mapping[str, Stage]) -> dict[str, str]:
    """"a=x,b=y" -> {"a": "x", "b": "y"}, each stage and choice checked. Raises PluginError
    naming the part that does not fit."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, choice = part.strip().partition("=")
        if not sep or not key or not choice:
            raise PluginError(f"{text!r}: write each stage's choice as STAGE=NAME, e.g. "
                              f"{next(iter(stages))}=NAME, comma-separated")
        if key not in stages:
            raise PluginError(f"{text!r}: no stage {key!r}; stages: {', '.join(stages)}")
        stages[key].variant(choice)
        out[key] = choice
    return out


@dataclass(frozen=True)
class Choices(Mapping[str, Variant]):
    """The kernels (or goldens) of a chain as a target's variants: every name of the form
    "stage=name,..." is one, the stages it leaves out at their defaults; iterating lists the
    default and each stage's other choices one at a time. `make` builds the variant of a full
    choice per stage."""

    role: str
    stages: Mapping[str, Stage]
    make: Any  # (role, {stage: choice}, name) -> Variant
    defaults: Mapping[str, str] = field(default_factory=dict)

    def full(self, name: str) -> dict[str, str] | None:
        """Every stage's choice for the variant `name`, or None when it names none."""
        if not isinstance(name, str) or "=" not in name or ":" in name:
            return None
        try:
            return {**self.defaults, **parse_choices(name, self.stages)}
        except PluginError:
            return None

    def __getitem__(self, name: str) -> Variant:
        choices = self.full(name)
        if choices is None:
            raise KeyError(name)
        return self.make(self.role, choices, name)  # type: ignore[no-any-return]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.full(name) is not None

    def __iter__(self) -> Iterator[str]:
        yield self.default
        for key, stage_ in self.stages.items():
            pool = stage_.kernels if self.role == KERNEL else stage_.goldens
            for choice in pool:
                if choice != self.defaults[key]:
                    yield f"{key}={choice}"

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @property
    def default(self) -> str:
        """The name of the default: every stage's default choice."""
        return ",".join(f"{k}={v}" for k, v in self.defaults.items())

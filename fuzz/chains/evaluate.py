"""Running a chain: its wiring called with one callable per stage, each stage running the kernel
or golden a choice names (`ChainCall`, the function behind a chain's kernels and goldens), and
the local error of each stage (Herbgrind's: the stage's kernel on the inputs the all-golden
chain gives it, judged against its golden by the stage's comparators).

The golden chain the executor runs for a case keeps what each stage was given and gave
(`last_trace`), and the kernel chain the choices it ran, so that `local_features`, which the
executor calls right after both on the same inputs, measures every stage's local error without
running the chain again.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kfuzz.chains.stages import GOLDEN, Stage

# The feature that names a stage failing on its own inputs ("blame:<stage>"), or no stage
# failing while the output does ("blame:no_local_fault"): the words a chain's failure buckets carry.
BLAME = "blame:"
COMPOUND = "no_local_fault"
LOCAL = "local:"


@dataclass
class StageCall:
    """One call of a stage in a traced run: its keyword arguments and outputs by name."""

    stage: str
    kwargs: dict[str, Any]
    outputs: dict[str, Any]


@dataclass
class Trace:
    """The stage calls of one golden run, in order, and the input tensors it ran on (held, so
    that their ids name this run)."""

    inputs: tuple[Any, ...]
    calls: list[StageCall] = field(default_factory=list)


class _Last(threading.local):
    def __init__(self) -> None:
        self.trace: tuple[int, Trace] | None = None
        self.kernel: tuple[int, dict[str, str], str] | None = None


LAST = _Last()


def as_outputs(stage: Stage, result: Any) -> dict[str, Any]:
    """A stage's result (a tensor, a tuple or a dict) by output name."""
    import torch

    if isinstance(result, torch.Tensor):
        result = (result,)
    if isinstance(result, Mapping):
        return dict(result)
    return dict(zip(stage.outputs, result, strict=True))


def _on(device: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    import torch

    where = torch.device(device)
    return {k: v.to(where) if isinstance(v, torch.Tensor) and v.device != where else v
            for k, v in kwargs.items()}


class Stages:
    """What a wiring is handed: `stages.NAME(**kwargs)` (or `stages["NAME"](...)`) runs that
    stage's chosen kernel or golden and returns what it returns. `on_call(stage, kwargs,
    result)` sees every call (tracing); kernels run on `device`, goldens on the CPU."""

    def __init__(self, stages: Mapping[str, Stage], choices: Mapping[str, str], device: str,
                 on_call: Callable[[str, dict[str, Any], Any], None] | None = None) -> None:
        self._stages, self._choices, self._device = stages, choices, device
        self._on_call = on_call
        self.calls = 0

    def __getitem__(self, name: str) -> Callable[..., Any]:
        if name not in self._stages:
            raise KeyError(f"no stage {name!r}; stages: {', '.join(self._stages)}")

        def call(**kwargs: Any) -> Any:
            stage = self._stages[name]
            choice = self._choices[name]
            where = self._device if choice in stage.kernels and choice not in stage.goldens else "cpu"
            result = stage.variant(choice)(**_on(where, kwargs))
            self.calls += 1
            if self._on_call is not None:
                self._on_call(name, kwargs, result)
            return result

        return call

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(str(exc)) from None


def _key(inputs: Mapping[str, Any]) -> int:
    """The ids of the tensors of a call (its inputs; params left out): which run it was."""
    import torch

    return hash(tuple(id(v) for v in inputs.values() if isinstance(v, torch.Tensor)))


class ChainCall:
    """A chain kernel or golden: the wiring, its stages at `choices`. `role` GOLDEN with every
    stage at a golden keeps its trace for `local_features`; a KERNEL run notes its choices."""

    def __init__(self, chain: Any, role: str, choices: Mapping[str, str]) -> None:
        self.chain, self.role, self.choices = chain, role, dict(choices)
        self.__name__ = self.__qualname__ = f"{chain.name}:{role}"

    def __call__(self, **kwargs: Any) -> Any:
        import torch

        key = _key(kwargs)
        tensors = [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
        device = str(tensors[0].device) if tensors else "cpu"
        trace = Trace(tuple(kwargs.values())) if self.role == GOLDEN else None

        def note(stage: str, call_kwargs: dict[str, Any], result: Any) -> None:
            if trace is not None:
                trace.calls.append(StageCall(stage, call_kwargs,
                                             as_outputs(self.chain.stages[stage], result)))

        result = self.chain.run(self.choices, kwargs, device, note)
        if trace is not None:
            LAST.trace = (key, trace)
        else:
            LAST.kernel = (id(self.chain), self.choices, device)
        return result


def local_errors(chain: Any, kernels: Mapping[str, str], trace: Trace,
                 device: str) -> dict[str, dict[str, Any]]:
    """Each traced stage's local error: its kernel (`kernels`) on the inputs the golden run gave
    it, against the golden's outputs, per output (`Metrics.to_dict`, summary form) and whether
    every output passed ("passed"). A stage called twice keeps its worst call."""
    import torch
    from kfuzz.judge.compare import compare

    out: dict[str, dict[str, Any]] = {}
    for call in trace.calls:
        stage = chain.stages[call.stage]
        variant = stage.variant(kernels[call.stage])
        with torch.no_grad():
            got = as_outputs(stage, variant(**_on(device, call.kwargs)))
        metrics = {name: compare(got[name].cpu(), ref.cpu(), stage.comparators[name]).to_dict()
                   for name, ref in call.outputs.items()}
        record = {"passed": all(m["passed"] for m in metrics.values()), "outputs": metrics,
                  "kernel": kernels[call.stage]}
        held = out.get(call.stage)
        if held is None or (held["passed"] and not record["passed"]):
            out[call.stage] = record
    return out


def blame_features(locals_: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Features from local errors: per stage its worst error over what its comparator allows
    (log2, for the search to climb), and the stages that fail on their own inputs ("blame:"),
    or "blame:no_local_fault" when none does."""
    out: dict[str, float] = {}
    failing = [s for s, rec in locals_.items() if not rec["passed"]]
    for name, rec in locals_.items():
        worst = max((float(m.get("worst_over_allowed") or 0.0) for m in rec["outputs"].values()),
                    default=0.0)
        if worst > 0 and math.isfinite(worst):
            out[f"{LOCAL}{name}"] = min(math.log2(worst), 1024.0)
    for name in failing or [COMPOUND]:
        out[f"{BLAME}{name}"] = 1.0
    return out


def local_features(chain: Any, inputs: Mapping[str, Any], actual: Mapping[str, Any],
                   expected: Mapping[str, Any]) -> dict[str, float]:
    """`Target.features` of a chain: `blame_features` of the case just run, when its outputs
    differ at all; {} when they are bit-identical or the runs were not noted (another path)."""
    import torch

    if all(torch.equal(actual[k].cpu(), expected[k].cpu()) for k in expected):
        return {}
    trace, kernel = LAST.trace, LAST.kernel
    if trace is None or kernel is None or kernel[0] != id(chain) or trace[0] != _key(inputs):
        return {}
    return blame_features(local_errors(chain, kernel[1], trace[1], kernel[2]))

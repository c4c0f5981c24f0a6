"""Attribution of a failing chain case, computed once the case is shrunk (`Attributor`).

Per stage: its local error (its kernel on the inputs the all-golden chain gives it, judged
against its golden by its own comparators: mismatch ratio, worst error over allowed, ULPs) and
two swap tests on the chain's output: the chain with only that stage's golden in place of its
kernel ("fixes": does the output pass), and the chain with every stage golden but that one
("alone": does the output still fail). The verdict: "compound" when every stage is within its
budget on its own inputs and alone, yet the output is not; else the stage(s) whose swap fixes
the output; else "several" (no single stage: it takes more than one), with each stage's share of the
output error (its mismatched outputs when alone, over the sum of all stages'). A swap that
equals another run (in a two-stage chain, one stage's golden alone is the other's kernel alone)
runs once: attribution costs the traced golden run plus at most two chain runs per stage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kfuzz.chains.evaluate import Trace, as_outputs, local_errors

STAGE, SEVERAL, COMPOUND = "stage", "several", "compound"


def _num(value: Any) -> float:
    """A number the corpus's JSON can hold: None as 0, an infinity or NaN as 1e308."""
    number = float(value or 0.0)
    return number if math.isfinite(number) else 1e308


def _worst(record: Mapping[str, Any]) -> dict[str, Any]:
    """The local error of a stage as one record: its worst output's numbers."""
    outputs = list(record["outputs"].values())
    worst = max(outputs, key=lambda m: (not m["passed"], m.get("worst_over_allowed") or 0.0))
    keys = ("mismatch_ratio", "worst_over_allowed", "max_ulp")
    return {"passed": record["passed"], "mismatches": int(worst.get("mismatches") or 0),
            "numel": int(worst.get("numel") or 0), **{k: _num(worst.get(k)) for k in keys}}


class Attributor:
    """`Target.attribute` of a chain: a failing case's `Job` -> the attribution as JSON-able
    data, or None when its kernel or oracle is not a choice per stage (a user callable).
    `runs` counts the chain runs of the last call."""

    def __init__(self, chain: Any) -> None:
        self.chain = chain
        self.runs = 0

    def __call__(self, job: Any) -> dict[str, Any] | None:
        import torch
        from kfuzz.execute.executor import materialise_case
        from kfuzz.targets import registry

        target = registry.get(self.chain.name)
        case, comparator, device = job.case, job.comparator, job.device
        kernels, goldens = target.kernels.full(job.kernel), target.oracles.full(job.oracle)  # type: ignore[attr-defined]
        if kernels is None or goldens is None:
            return None
        inputs, params = materialise_case(target, case)
        kwargs = {**inputs, **params}
        self.runs = 0
        trace = Trace(tuple(inputs.values()))
        with torch.no_grad():
            reference = self._run(target, goldens, kwargs, "cpu", trace)
            local = local_errors(self.chain, kernels, trace, device)
            runs: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}

            def judged(choices: dict[str, str]) -> dict[str, Any]:
                key = tuple(sorted(choices.items()))
                if key not in runs:
                    got = self._run(target, choices, kwargs, device)
                    runs[key] = _judge(target, got, reference, comparator)
                return runs[key]

            stages: dict[str, dict[str, Any]] = {}
            for name in self.chain.stages:
                fixed = judged({**kernels, name: goldens[name]})
                alone = judged({**goldens, name: kernels[name]})
                stages[name] = {"kernel": kernels[name], "golden": goldens[name],
                                "local": _worst(local[name]) if name in local else None,
                                "fixes": fixed["passed"], "alone_fails": not alone["passed"],
                                "alone_mismatches": alone["mismatches"],
                                "alone_worst": alone["worst_over_allowed"]}
        return verdict(stages, self.runs)

    def _run(self, target: Any, choices: Mapping[str, str], kwargs: Mapping[str, Any],
             device: str, trace: Trace | None = None) -> dict[str, Any]:
        from kfuzz.cases.materialise import to_device
        from kfuzz.execute.executor import as_outputs as chain_outputs

        def note(stage: str, call_kwargs: dict[str, Any], result: Any) -> None:
            if trace is not None:
                from kfuzz.chains.evaluate import StageCall

                trace.calls.append(StageCall(stage, call_kwargs,
                                             as_outputs(self.chain.stages[stage], result)))

        self.runs += 1
        tensors = to_device({k: v for k, v in kwargs.items() if hasattr(v, "device")}, device)
        got = self.chain.run(choices, {**kwargs, **tensors}, device, note)
        return {k: v.cpu() for k, v in chain_outputs(got, target, f"chain {target.name!r}").items()}


def _judge(target: Any, got: Mapping[str, Any], reference: Mapping[str, Any],
           comparator: Mapping[str, Any] | None) -> dict[str, Any]:
    """The chain's outputs against the golden chain's: passed, mismatched elements, worst
    error over allowed."""
    from kfuzz.judge.comparator import with_overrides
    from kfuzz.judge.compare import compare

    metrics = [compare(got[k], reference[k], with_overrides(target.comparators[k], comparator),
                       full=False) for k in reference]
    return {"passed": all(m.passed for m in metrics),
            "mismatches": sum(int(m["mismatches"]) for m in metrics),
            "worst_over_allowed": max(_num(m.get("worst_over_allowed")) for m in metrics)}


def verdict(stages: dict[str, dict[str, Any]], runs: int) -> dict[str, Any]:
    """The attribution from each stage's local error and swap tests: verdict, blamed stages,
    each stage's share of the output error and a one-line summary."""
    total = sum(s["alone_mismatches"] for s in stages.values())
    weight = "alone_mismatches"
    if total == 0:
        total, weight = sum(s["alone_worst"] for s in stages.values()), "alone_worst"
    for s in stages.values():
        s["share"] = round(s[weight] / total, 4) if total else 0.0
    fixes = [n for n, s in stages.items() if s["fixes"]]
    broken = [n for n, s in stages.items()
              if s["alone_fails"] or (s["local"] is not None and not s["local"]["passed"])]
    if not broken:
        kind, blamed = COMPOUND, []
    elif fixes:
        kind, blamed = STAGE, fixes
    else:
        kind, blamed = SEVERAL, broken
    return {"verdict": kind, "blamed": blamed, "stages": stages, "chain_runs": runs,
            "summary": summary(kind, blamed, stages)}


def summary(kind: str, blamed: list[str], stages: Mapping[str, Mapping[str, Any]]) -> str:
    """One line: which stage to fix, and why."""
    shares = ", ".join(f"{n} {s['share']:.0%}" for n, s in stages.items())
    if kind == COMPOUND:
        return ("no single stage: every stage is within its budget on its own inputs, but "
                f"their errors compound at the output (shares {shares})")
    if kind == SEVERAL:
        return (f"no single stage: it takes fixing {' and '.join(blamed)} (swapping one golden "
                f"in does not fix the output; shares {shares})")
    parts = []
    for name in blamed:
        s = stages[name]
        local = s["local"]
        if local is not None and not local["passed"]:
            why = (f"its kernel {s['kernel']} and golden {s['golden']} disagree on the inputs "
                   f"the golden chain gives it ({local['mismatch_ratio']:.2%} of its outputs)")
        else:
            why = "within its own budget, but its error grows downstream"
        parts.append(f"stage {name}: {why}")
    return (f"blame {' and '.join(blamed)}: its golden in place of its kernel fixes the output; "
            + "; ".join(parts) + f" (shares {shares})")

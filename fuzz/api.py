"""The Python API: `kfuzz.fuzz`, `kfuzz.check` and `kfuzz.run_case`.

    result = kfuzz.fuzz("ops.rmsnorm", kernel=my_rmsnorm, max_examples=200)
    kfuzz.check("ops.rmsnorm", kernel=my_rmsnorm)          # AssertionError with the shrunk case

Hypothesis' `@given` is the model: one call, callables in. `target` is a registered name or a
`Target` (e.g. from `kfuzz.target`); `kernel` and `oracle` a variant name, a "module:function"
reference, or any callable with the target's signature. Both go through `kfuzz.runner.run`,
the path `kfuzz run` takes, so a finding here is the finding the command line would store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfuzz.errors import OptionError

# Keyword options of `fuzz` beyond its named arguments: how each campaign searches, and how
# the run is executed.
CAMPAIGN_OPTIONS = ("profile", "batch", "max_numel", "shrink_seconds", "pins", "exclude")
RUN_OPTIONS = ("isolate", "case_timeout", "workers", "plugins")


@dataclass
class Result:
    """What `fuzz` did. findings: each failing case found (shrunk ones, then the worst case
    seen), a `kfuzz.findings.Finding` with its case, outcome (metrics per output), kind and
    shrink info. examples: cases run, shrinking not counted. closest: the case that came
    nearest to failing (or failed worst), a `kfuzz.runner.Closest`, even when nothing failed.
    stopped: "examples", "budget", "exhausted" or "interrupted". run_id: its row in the
    corpus's runs table (None without db)."""

    target: str
    kernel: str
    oracle: str
    seed: int
    examples: int
    seconds: float
    stopped: str
    findings: list[Any] = field(default_factory=list)
    closest: Any = None
    run_id: int | None = None
    comparator: dict[str, Any] | None = None
    device: str = "cpu"

    @property
    def failed(self) -> bool:
        """True when anything was over its threshold."""
        return bool(self.findings)

    def failure_message(self) -> str:
        """The shrunk case first, then the comparison, then how to reproduce it."""
        first = next((f for f in self.findings if f.kind == "shrunk"), self.findings[0])
        shrink = first.shrink or {}
        sized = (f", shrunk from {shrink['size_before']} to {shrink['size_after']} input "
                 "elements" if shrink.get("size_after") is not None else "")
        lines = [
            f"kfuzz: {first.failure} on {self.target} (kernel {self.kernel} vs oracle "
            f"{self.oracle}){sized}; {len(self.findings)} finding(s) in {self.examples} "
            f"examples",
            "",
            "Falsifying case:",
            f"    {json.dumps(first.case, sort_keys=True)}",
            "",
        ]
        for name, metrics in first.outcome.outputs.items():
            verdict = "pass" if metrics.get("passed") else "FAIL"
            lines.append(f"output {name}: {verdict}")
            lines.append(str(metrics.get("message", "")).rstrip())
            lines.append("")
        if first.outcome.error:
            lines += [f"error: {first.outcome.error}", ""]
        comparator = f", comparator={self.comparator!r}" if self.comparator else ""
        device = f", device={self.device!r}" if self.device != "cpu" else ""
        lines += [
            "Reproduce:",
            f"    kfuzz.run_case({self.target!r}, {json.dumps(first.case, sort_keys=True)}, "
            f"kernel={self.kernel!r}, oracle={self.oracle!r}{comparator}{device})",
            f"    kfuzz.fuzz({self.target!r}, kernel=..., seed={self.seed}) searches again",
        ]
        return "\n".join(lines)


def _target_name(target: Any) -> str:
    from kfuzz import targets as registry
    from kfuzz.declare import mark_declared

    if isinstance(target, str):
        registry.get(target)  # UnknownTarget now, not mid-run
        return target
    if isinstance(target, registry.Target):
        if target.name not in registry.names() or registry.get(target.name) is not target:
            registry.register(target, replace=True)
            mark_declared(target.name)
        return target.name
    raise TypeError(f"target must be a registered name or a kfuzz Target, not "
                    f"{type(target).__name__}")


def _variant_name(role: str, value: Any) -> str | None:
    from kfuzz import targets as registry

    if value is None or isinstance(value, str):
        return value
    if callable(value):
        return registry.callable_name(value, role)
    raise TypeError(f"{role} must be a variant name, a 'module:function' reference or a "
                    f"callable, not {type(value).__name__}")


def fuzz(target: Any, *, kernel: str | Callable[..., Any] | None,
         oracle: str | Callable[..., Any] | None = None, comparator: Any = None,
         max_examples: int | None = None, budget: float | None = None, seed: int | None = None,
         db: str | Path | None = None, device: str = "cpu", **options: Any) -> Result:
    """Fuzz `kernel` against `oracle` on `target` and return a Result.

    target: a registered name or a `Target`. kernel, oracle: a variant name, a
    "module:function" reference or a callable taking the target's inputs and params as keyword
    arguments (None: the target's default). comparator: None (each output's default), a mode
    ("exact", "allclose", "ulp"), a dict of Comparator fields to override (e.g. {"mode":
    "exact", "max_ratio": 0.005}) or a `Comparator`. max_examples, budget (seconds): the
    first one spent ends the search (default: the profile's examples). seed: None for a
    random one (reported in the result). db: a corpus path to store findings and the run in;
    None stores nothing. device: where the kernel runs ("cpu", "cuda", "cuda:1").
    options: profile ("ci", "dev", "nightly"), batch, max_numel, shrink_seconds, pins (case
    fields held fixed), exclude (value regimes left out), isolate, case_timeout, workers,
    plugins (modules or files registering targets, for worker processes).
    Raises KfuzzError (a subclass naming the problem) for anything that cannot run, and
    TypeError for an unknown option."""
    from kfuzz.runner import RunOptions, comparator_overrides, run
    from kfuzz.search import CampaignConfig

    unknown = sorted(set(options) - set(CAMPAIGN_OPTIONS) - set(RUN_OPTIONS))
    if unknown:
        raise TypeError(f"fuzz() got an unexpected keyword argument {unknown[0]!r}; options: "
                        f"{', '.join(CAMPAIGN_OPTIONS + RUN_OPTIONS)}")
    name = _target_name(target)
    campaign = CampaignConfig(
        target=name, kernel=_variant_name("kernel", kernel), oracle=_variant_name("oracle", oracle),
        comparator=comparator, max_examples=max_examples, budget=budget, seed=seed, device=device,
        **{k: v for k, v in options.items() if k in CAMPAIGN_OPTIONS},
    )
    run_options = RunOptions(targets=[name], campaign=campaign,
                             **{k: v for k, v in options.items() if k in RUN_OPTIONS})
    report = run(run_options, db=db, argv=["<kfuzz.fuzz>", name])
    if not report.campaigns:
        raise OptionError("target", name, ": nothing ran")
    results = report.campaigns
    first = results[0]
    closest = max((r.closest for r in report.runs if r.closest is not None),
                  key=lambda c: c.score, default=None)
    overrides = comparator_overrides(comparator)
    return Result(
        target=name, kernel=first.kernel, oracle=first.oracle, seed=first.seed,
        examples=sum(r.examples for r in results), seconds=sum(r.seconds for r in results),
        stopped=first.stopped, findings=report.findings, closest=closest,
        run_id=report.run_id, comparator=overrides, device=device,
    )


def check(target: Any, *, kernel: str | Callable[..., Any] | None, **kwargs: Any) -> Result:
    """`fuzz` with the same arguments, for tests: returns the Result when nothing failed,
    raises AssertionError (the shrunk case first, then the comparison and how to reproduce
    it) otherwise."""
    result = fuzz(target, kernel=kernel, **kwargs)
    if result.failed:
        raise AssertionError(result.failure_message())
    return result


def run_case(target: Any, case: Mapping[str, Any], *, kernel: str | Callable[..., Any] | None,
             oracle: str | Callable[..., Any] | None = None, comparator: Any = None,
             device: str = "cpu") -> Any:
    """Run and judge one case, exactly as a campaign would, and return its
    `kfuzz.executor.Outcome` (status, metrics per output, error). Raises KfuzzError for a
    case or callable that does not fit the target."""
    from kfuzz import targets as registry
    from kfuzz.executor import InProcessExecutor, Job
    from kfuzz.runner import check_device, comparator_overrides

    check_device(device)
    name = _target_name(target)
    resolved = registry.get(name)
    job = Job(name, _variant_name("kernel", kernel) or resolved.default_kernel,
              _variant_name("oracle", oracle) or resolved.default_oracle, dict(case),
              comparator_overrides(comparator), device)
    return InProcessExecutor().evaluate([job])[0]

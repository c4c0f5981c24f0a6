"""The Python API: `kfuzz.fuzz`, `kfuzz.check` and `kfuzz.run_case`.

    result = kfuzz.fuzz("ops.rmsnorm", kernel=my_rmsnorm, max_examples=200)
    kfuzz.check("ops.rmsnorm", kernel=my_rmsnorm)          # AssertionError with the shrunk case

Hypothesis' `@given` is the model: one call, callables in. `target` is a registered name or a
`Target` (e.g. from `kfuzz.target`); `kernel` and `oracle` a variant name, a "module:function"
reference, or any callable with the target's signature. Both go through `kfuzz.run.runner.run`,
the path `kfuzz run` takes, so a finding here is the finding the command line would store.
"""

from __future__ import annotations

import inspect
import math
import numbers
import sys
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
    seen), a `kfuzz.execute.findings.Finding` with its case, outcome (metrics per output), kind and
    shrink info. examples: cases run, shrinking not counted. closest: the case that came
    nearest to failing (or failed worst), a `kfuzz.run.campaigns.Closest`, even when nothing failed.
    stopped: "examples", "budget", "exhausted" or "interrupted". run_id: its row in the
    corpus's runs table (None without db). warnings: the Python warnings raised while it ran,
    counted by kind instead of shown (`kfuzz.search.warned.Warned.kinds`)."""

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
    warnings: list[dict[str, Any]] = field(default_factory=list)

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
        case = py_literal(first.case)
        lines = [
            f"kfuzz: {first.failure} on {self.target} (kernel {self.kernel} vs oracle "
            f"{self.oracle}){sized}; {len(self.findings)} finding(s) in {self.examples} "
            f"examples",
            "",
            "Falsifying case:",
            f"    {case}",
            "",
        ]
        for name, metrics in first.outcome.outputs.items():
            verdict = "pass" if metrics.get("passed") else "FAIL"
            lines.append(f"output {name}: {verdict}")
            lines.append(str(metrics.get("message", "")).rstrip())
            lines.append("")
        if first.outcome.error:
            lines += [f"error: {first.outcome.error}", ""]
        if first.attribution:
            from kfuzz.present.attribution import attribution_lines

            lines += [*attribution_lines(first.attribution), ""]
        lines.append("Reproduce:")
        lines += ["    " + line for line in self.reproduce_lines(case)]
        return "\n".join(lines)

    def reproduce_lines(self, case: str) -> list[str]:
        """Python lines that run the case (`case`: its Python literal) again, then search
        again: `import kfuzz`, a comment for each thing they cannot name (a target declared in
        this process, a kernel or oracle without an importable name, passed as the variable
        `kernel` or `oracle`), `kfuzz.run_case(...)` and `kfuzz.fuzz(...)`."""
        from kfuzz.targets import registry
        from kfuzz.targets.declare import declared

        lines = ["import kfuzz"]
        plugins = registry.plugins_for(self.target)
        if plugins:
            lines += ["import kfuzz.targets"] + [
                f"kfuzz.targets.load_plugin({plugin!r})" for plugin in plugins]
        elif declared(self.target):
            lines.append(f"# target {self.target!r} was declared in this process with "
                         "kfuzz.target(...): declare it again before run_case")
        kernel, kernel_note = _callable_source("kernel", self.kernel, self.target)
        oracle, oracle_note = _callable_source("oracle", self.oracle, self.target)
        lines += [note for note in (kernel_note, oracle_note) if note]
        comparator = f", comparator={py_literal(self.comparator)}" if self.comparator else ""
        device = f", device={self.device!r}" if self.device != "cpu" else ""
        return lines + [
            f"kfuzz.run_case({self.target!r}, {case}, kernel={kernel}, oracle={oracle}"
            f"{comparator}{device})",
            f"kfuzz.fuzz({self.target!r}, kernel={kernel}, oracle={oracle}{comparator}"
            f"{device}, seed={self.seed})  # searches again",
        ]


def py_literal(value: Any) -> str:
    """`value` (case data: dicts, lists, strings, numbers, booleans, None) as Python source
    that evaluates to an equal value: True/False/None, floats as their repr (which round-trips),
    float('inf'), float('-inf') and float('nan') for the non-finite ones; dict keys sorted as
    in the corpus's JSON."""
    if value is None or isinstance(value, (bool, str)):
        return repr(value)
    if isinstance(value, numbers.Integral):
        return repr(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return "float('nan')"
        if math.isinf(number):
            return "float('inf')" if number > 0 else "float('-inf')"
        return repr(number)
    if isinstance(value, Mapping):
        items = list(value.items())
        if all(isinstance(k, str) for k, _ in items):
            items.sort()
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}" for k, v in items) + "}"
    if isinstance(value, tuple):
        inner = ", ".join(py_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, (list, set, frozenset)):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    return repr(value)


def _callable_source(role: str, name: str, target: str) -> tuple[str, str | None]:
    """How the reproduce lines pass the kernel or oracle called `name`: (Python expression,
    comment line or None). A variant name or an importable reference as a string; a function
    of a module loaded from a file by path as "/abs/file.py:function"; a callable no other
    process can name (a lambda, a closure, a nested function) as the variable `role`, with a
    comment saying so."""
    from kfuzz.targets import registry
    from kfuzz.targets.references import normal_reference

    module, sep, attr = name.rpartition(":")
    if registry.is_local(name):
        fn = registry.resolve(registry.get(target), role, name).fn
        ref = _file_reference(fn)
        if ref is not None:
            return repr(ref), None
        qualname = str(getattr(fn, "__qualname__", ""))
        what = ("a lambda" if "<lambda>" in qualname else
                "a nested function or closure" if "<locals>" in qualname else
                "a callable without an importable name")
        return role, (f"# {role} = <your {role}: pass the same callable> ({what}, {name}, "
                      "has no name that another process can import)")
    if sep and module and module != "__main__" and not module.endswith(".py"):
        file = getattr(sys.modules.get(module), "__file__", None)
        if isinstance(file, str) and file.endswith(".py") and not _imports_file(module, file):
            return repr(normal_reference(f"{Path(file).resolve()}:{attr}")), None
    return repr(name), None


def _file_reference(fn: Any) -> str | None:
    """"/abs/file.py:function" for a function defined at the top level of a Python file
    whose module cannot be imported by name (loaded by path), else None."""
    from kfuzz.targets.references import normal_reference

    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(qualname, str) or "<" in qualname or not callable(fn):
        return None
    try:
        file = inspect.getsourcefile(inspect.unwrap(fn))
    except (TypeError, ValueError):
        return None
    if not file or not file.endswith(".py") or not Path(file).is_file():
        return None
    return normal_reference(f"{Path(file).resolve()}:{qualname}")


def _imports_file(module: str, file: str) -> bool:
    """True when a fresh `import module` (this sys.path, without sys.modules) loads `file`."""
    locations: list[str] | None = None
    spec = None
    parts = module.split(".")
    for depth in range(len(parts)):
        name, spec = ".".join(parts[: depth + 1]), None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            try:
                spec = find(name, locations)
            except (ImportError, ValueError, OSError, AttributeError, TypeError):
                continue
            if spec is not None:
                break
        if spec is None:
            return False
        locations = list(spec.submodule_search_locations or [])
    origin = getattr(spec, "origin", None)
    try:
        return isinstance(origin, str) and Path(origin).resolve() == Path(file).resolve()
    except OSError:
        return False


def _target_name(target: Any) -> str:
    from kfuzz.targets import registry
    from kfuzz.targets.declare import mark_declared

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
    from kfuzz.targets import registry

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
    from kfuzz.run.plan import RunOptions, comparator_overrides
    from kfuzz.run.runner import run
    from kfuzz.search.campaign import CampaignConfig, HypothesisStorage

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
    with HypothesisStorage():  # no .hypothesis/ in the working directory
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
        warnings=[kind for r in results for kind in r.warnings],
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
    `kfuzz.execute.executor.Outcome` (status, metrics per output, error). Raises KfuzzError for a
    case or callable that does not fit the target."""
    from kfuzz.execute.executor import InProcessExecutor, Job
    from kfuzz.run.plan import check_device, comparator_overrides
    from kfuzz.targets import registry

    check_device(device)
    name = _target_name(target)
    resolved = registry.get(name)
    job = Job(name, _variant_name("kernel", kernel) or resolved.default_kernel,
              _variant_name("oracle", oracle) or resolved.default_oracle, dict(case),
              comparator_overrides(comparator), device)
    return InProcessExecutor().evaluate([job])[0]

"""Executors: the one place kernels and oracles are called.

A `Job` names everything by string (target, kernel, oracle) and carries the case as plain data;
an `Outcome` is plain data too. The search and replay only ever see these, so an executor that
runs jobs in worker processes or on other machines slots in without touching them.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from kfuzz.cases.materialise import generator_for, to_device
from kfuzz.cases.materialise.batch import SeedCopy, copies_of
from kfuzz.enums import UNJUDGED, Status
from kfuzz.errors import BadCallable, CaseError, ContractViolation, KfuzzError, OracleError
from kfuzz.execute.allocator import keep_freed_memory
from kfuzz.execute.contract import Snapshot, contract_breach
from kfuzz.judge.comparator import with_overrides
from kfuzz.judge.compare import Metrics, ShapeMismatch, compare
from kfuzz.judge.error_class import error_class
from kfuzz.targets import registry
from kfuzz.targets.registry import OutputSpec, Target, Variant


@dataclass(frozen=True)
class Job:
    """One case to run: kernel vs oracle on `target`, compared per output.

    comparator: overrides the target's default comparator for every output when given
    (a `Comparator.to_dict()` dict). device: where the kernel runs; the oracle runs on the CPU.
    full_metrics: every output gets full metrics, passing or not.
    plugins: plugin files or modules (`--plugin` values) to load before resolving the target,
    e.g. those a stored finding recorded.
    """

    target: str
    kernel: str
    oracle: str
    case: Mapping[str, Any]
    comparator: Mapping[str, Any] | None = None
    device: str = "cpu"
    # False: a passing output gets summary metrics (what its verdict needs, see
    # `kfuzz.judge.compare.compare`); an outcome that fails gets full metrics for every output.
    full_metrics: bool = False
    plugins: Sequence[str] = ()


@dataclass
class Outcome:
    """What running a job gave.

    status: a `Status` (a str enum: "pass", "fail", "error", "contract", "crash", "timeout";
    the last two come from `kfuzz.execute.isolation`). outputs: output name -> `Metrics` (a summary for
    a passing output unless the job asked for full metrics; each reads like its `to_dict()`,
    e.g. `m["mismatch_ratio"]`). error: the text shown to people, "Kind: message", e.g.
    "RuntimeError: ...", "Crash: worker killed by SIGSEGV ...". What classifies the failure
    travels as data beside it: error_type (the exception's class name for "error", the breach,
    "writes-input" or "aliases-input", for "contract"), signal (e.g. "SIGSEGV") or exit_code
    for "crash", timeout (the limit in seconds) for "timeout"."""

    status: Status
    outputs: dict[str, Metrics] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    error_type: str | None = None
    signal: str | None = None
    exit_code: int | None = None
    timeout: float | None = None
    # What the target reports about the case beside the verdict (`Target.features`), for the
    # search to climb, e.g. {"ties": 3.0}.
    features: dict[str, float] = field(default_factory=dict)
    # The dtype of each output of a failing outcome, by name (e.g. {"y": "bfloat16"}): the unit
    # of its error class (`error_class`). Empty for other outcomes and in older records.
    dtypes: dict[str, str] = field(default_factory=dict)
    # Where an "error" outcome's exception was raised: the last frames of the kernel's
    # traceback, outermost first, each {"file": str, "line": int, "function": str} (JSON-safe,
    # `error_frames`). None for other outcomes. The error text ends with them too (see
    # `FRAMES_HEADER`), which is how a stored finding keeps them.
    error_frames: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.status = Status(self.status)

    @property
    def failed(self) -> bool:
        """True unless every output passed."""
        return self.status is not Status.PASS  # a Status, made so by __post_init__

    def worst_ratio(self) -> float:
        """The largest mismatch ratio over the outputs (1.0 when there are no metrics: an
        error, a contract breach, a crash or a timeout)."""
        if self.status in UNJUDGED:
            return 1.0
        return max((m["mismatch_ratio"] for m in self.outputs.values()), default=0.0)

    def buckets(self) -> set[str]:
        """Failure classes of this outcome, e.g. {"y:mismatch:rounding"}, {"y:nonfinite"},
        {"error:RuntimeError"}, {"contract:writes-input"}, {"crash:SIGSEGV"}, {"crash:3"}
        (exit status), {"timeout:"}: a campaign shrinks one case per new class. A mismatch
        carries its output's `error_class` ("y:mismatch:wrong"); plain "y:mismatch" when that
        cannot be told (a record without the output's dtype or ULP data)."""
        if self.status == Status.CRASH:
            how = self.signal or ("" if self.exit_code is None else str(self.exit_code))
            return {f"crash:{how}"}
        if self.status == Status.TIMEOUT:
            return {"timeout:"}
        if self.status in (Status.ERROR, Status.CONTRACT):
            return {f"{self.status.value}:{self.error_type or ''}"}
        out = set()
        # A chain's failure also names the stages failing on their own inputs (`kfuzz.chain`),
        # so that shrinking keeps the blame: "out:mismatch:wrong@q".
        blame = "+".join(sorted(k[6:] for k, v in self.features.items()
                                if k.startswith("blame:") and v))
        at = f"@{blame}" if blame else ""
        for name, m in self.outputs.items():
            if not m["passed"]:
                if m["nonfinite_mismatches"]:
                    out.add(f"{name}:nonfinite{at}")
                    continue
                how = error_class(m, self.dtypes.get(name))
                out.add(f"{name}:mismatch" + (f":{how}" if how else "") + at)
        return out

    def worst_over_allowed(self) -> float:
        """The closest call: the largest `Metrics.worst_over_allowed` over the outputs (inf
        when there are no metrics: an error, a contract breach, a crash or a timeout)."""
        if self.status in UNJUDGED:
            return math.inf
        values = [m.get("worst_over_allowed") for m in self.outputs.values()]
        return max((float(v) for v in values if v is not None), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: metrics as their `to_dict()`, the status as its word; the error
        fields only when set."""
        out: dict[str, Any] = {
            "status": self.status.value,
            "outputs": {name: m.to_dict() if isinstance(m, Metrics) else dict(m)
                        for name, m in self.outputs.items()},
            "error": self.error, "seconds": self.seconds,
        }
        for name in ERROR_FIELDS:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.features:
            out["features"] = dict(self.features)
        if self.dtypes:
            out["dtypes"] = dict(self.dtypes)
        if self.error_frames:
            out["error_frames"] = [dict(f) for f in self.error_frames]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Outcome:
        """Rebuild an outcome from `to_dict()` output (the isolated worker's reply). Raises
        ValueError on an unknown status or a malformed metrics record."""
        return cls(status=Status(d["status"]),
                   outputs={name: Metrics.from_dict(m) for name, m in (d.get("outputs") or {}).items()},
                   error=d.get("error"), seconds=float(d.get("seconds") or 0.0),
                   features={k: float(v) for k, v in (d.get("features") or {}).items()},
                   dtypes={str(k): str(v) for k, v in (d.get("dtypes") or {}).items()},
                   error_frames=[dict(f) for f in d.get("error_frames") or []] or None,
                   **{name: d.get(name) for name in ERROR_FIELDS})


# The fields that classify an unjudged outcome (see `Outcome`).
ERROR_FIELDS = ("error_type", "signal", "exit_code", "timeout")

# An error outcome's text: "Type: message", then this line and the kernel's last frames as
# Python prints them (`  File "f.py", line 3, in fn`), so that the corpus keeps them (`kfuzz
# corpus show` reads them back).
FRAMES_HEADER = "Traceback (kernel frames, most recent call last):"
MAX_FRAMES = 6
# The calling machinery between run_case and the kernel: left out of a kernel's frames.
_CALLER_FILES = frozenset({__file__, registry.__file__})


def error_frames(exc: BaseException) -> list[dict[str, Any]]:
    """The last MAX_FRAMES frames of the traceback of `exc` raised inside a kernel (kfuzz's
    calling frames left out), outermost first: [{"file", "line", "function"}]."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    start = 0
    while start < len(frames) and frames[start].filename in _CALLER_FILES:
        start += 1
    return [{"file": f.filename, "line": int(f.lineno or 0), "function": f.name}
            for f in frames[start:][-MAX_FRAMES:]]


def error_text(exc: BaseException, frames: Sequence[Mapping[str, Any]]) -> str:
    """An error outcome's text: "Type: message" (at most 1500 characters), then FRAMES_HEADER
    and one line per frame, as Python's traceback prints them."""
    text = f"{type(exc).__name__}: {exc}"[:1500]
    if not frames:
        return text
    return "\n".join([text, FRAMES_HEADER] + [
        f'  File "{f["file"]}", line {f["line"]}, in {f["function"]}' for f in frames])


def contract_outcome(exc: ContractViolation) -> Outcome:
    """The "contract" outcome of a case on which a kernel broke its output contract (names,
    shape, dtype) where it has met it on others: a finding, not a configuration error."""
    return Outcome(Status.CONTRACT, error=f"Contract: output: {exc}", error_type="output")


class Executor(Protocol):
    """Runs jobs. Implementations: `InProcessExecutor`."""

    def evaluate(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Run `jobs` and return one Outcome each, in order. Raises KfuzzError for a
        configuration problem (unknown names, a kernel breaking its output contract)."""
        ...

    def close(self) -> None:
        """Release workers."""
        ...


def as_outputs(result: Any, target: Target, who: str) -> dict[str, torch.Tensor]:
    names = target.outputs
    if isinstance(result, torch.Tensor):
        result = (result,)
    if isinstance(result, Mapping):
        got = dict(result)
    elif isinstance(result, (tuple, list)) and len(result) == len(names):
        got = dict(zip(names, result, strict=False))
    else:
        raise ContractViolation(
            f"{who} returned {type(result).__name__}; target {target.name!r} expects "
            f"{len(names)} tensor(s) named {', '.join(names)} (a tensor, tuple or dict)"
        )
    if set(got) != set(names):
        raise ContractViolation(
            f"{who} returned outputs {sorted(got)}; target {target.name!r} expects {names}"
        )
    for name, tensor in got.items():
        if not isinstance(tensor, torch.Tensor):
            raise ContractViolation(
                f"{who} returned {type(tensor).__name__} for output {name!r}; expected a tensor"
            )
    return got


def materialise_case(
    target: Target, case: Mapping[str, Any], device: str = "cpu", copy: SeedCopy | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The case's input tensors, made from its seed, and its scalar parameters. A version-2
    case is built on `device` itself (the same bits as on the CPU); a version-1 case on the
    CPU, whatever `device`: move the tensors where they are needed (`to_device`). `copy`: the
    case's place in a batch of cases that differ only in their seed (`seed_copies`), whose
    small fields are built together. Raises CaseError when the case does not fit the target."""
    case = dict(case)
    try:
        return target.inputs(case, generator_for(case, device, copy)), target.params(case)
    except KfuzzError:
        raise
    except Exception as exc:
        raise CaseError(
            f"case does not fit target {target.name!r}: {type(exc).__name__}: {exc}"
        ) from None


def seed_copies(jobs: Sequence[Job]) -> list[SeedCopy | None]:
    """For each job, its place in a batch of consecutive jobs on the CPU that differ only in
    their case's seed (a search's batch); None for a job in no such batch."""
    return copies_of([job.case for job in jobs],
                     [(job.target, job.kernel, job.oracle, tuple(job.plugins))
                      if job.device == "cpu" else None for job in jobs])


def oracle_inputs(
    target: Target, oracle: Variant, cpu_inputs: Mapping[str, torch.Tensor], device: str
) -> Mapping[str, torch.Tensor]:
    """The inputs `oracle` runs on: a kernel variant named as the oracle (kernel vs kernel)
    runs on `device` like the kernel, on its own copy; a true oracle runs on the CPU."""
    if target.kernels.get(oracle.name) is oracle:
        return to_device(cpu_inputs, device)
    return cpu_inputs


def call_text(inputs: Sequence[str], params: Sequence[str]) -> str:
    """How a target calls its kernels and oracles, e.g. `fn(x, weight, *, eps)`."""
    return f"fn({', '.join(inputs)}{', *, ' + ', '.join(params) if params else ''})"


def check_signature(target: Target, role: str, variant: Variant, inputs: Sequence[str],
                    params: Sequence[str]) -> None:
    """Raises BadCallable when `variant` cannot be called the way `target` calls its kernels
    and oracles (inputs and params as keyword arguments), naming the call it expected and the
    signature it found. Does nothing for callables without an inspectable signature."""
    try:
        signature = inspect.signature(variant.fn)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(**dict.fromkeys([*inputs, *params]), **variant.params)
    except TypeError as exc:
        name = getattr(variant.fn, "__name__", type(variant.fn).__name__)
        raise BadCallable(
            f"{role} {variant.name!r} does not fit target {target.name!r}: expected "
            f"{call_text(inputs, params)}, got {name}{signature} ({exc})"
        ) from None


def _call(target: Target, role: str, variant: Variant, inputs: Mapping[str, torch.Tensor],
          params: Mapping[str, Any]) -> Any:
    try:
        return variant(**inputs, **params)
    except TypeError:
        # Only when it raised: binding costs more than a small kernel call.
        check_signature(target, role, variant, list(inputs), list(params))
        raise


def run_case(
    target: Target, kernel: Variant, oracle: Variant, job: Job, copy: SeedCopy | None = None
) -> Outcome:
    """Materialise `job.case` (as `copy` of a batch, see `seed_copies`), run kernel and oracle,
    check the kernel's output contract and compare per output. Raises ContractViolation when
    a kernel returns the wrong outputs, shapes or dtypes, BadCallable when a kernel or
    oracle cannot take the target's call (`check_signature`) and OracleError when the oracle
    raises; an exception raised inside the kernel becomes an "error" outcome, except a
    KfuzzError (such as KernelUnavailable), which propagates."""
    start = time.perf_counter()
    # Built where the kernel runs; the oracle's copy on the CPU (each a no-op where they are).
    inputs, params = materialise_case(target, job.case, job.device, copy)
    expected_specs = _expected_specs(target, job.case, copy)
    device_inputs = to_device(inputs, job.device)
    cpu_inputs = device_inputs if job.device == "cpu" else to_device(inputs, "cpu")
    snapshot = Snapshot(device_inputs)
    with torch.no_grad():
        try:
            got = _call(target, "kernel", kernel, device_inputs, params)
        except KfuzzError:
            raise  # e.g. KernelUnavailable: the kernel cannot run here at all, a configuration error
        except Exception as exc:  # the kernel's fault, to be reported, not a kfuzz crash
            frames = error_frames(exc)
            return Outcome(Status.ERROR, error=error_text(exc, frames),
                           error_type=type(exc).__name__, seconds=time.perf_counter() - start,
                           error_frames=frames or None)
        try:
            ref = _call(target, "oracle", oracle,
                        oracle_inputs(target, oracle, cpu_inputs, job.device), params)
        except KfuzzError:
            raise
        except Exception as exc:  # no reference, no verdict: the oracle's fault, not the kernel's
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            raise OracleError(
                f"oracle {oracle.name!r} of target {target.name!r} raised {detail} on case "
                f"{json.dumps(dict(job.case), sort_keys=True)}; an oracle must judge every case "
                "(fix it, or choose another with --oracle)"
            ) from None
    actual = as_outputs(got, target, f"kernel {kernel.name!r}")
    expected = as_outputs(ref, target, f"oracle {oracle.name!r}")
    breach = contract_breach(kernel.name, snapshot, actual)
    if breach:
        return Outcome(Status.CONTRACT, error=breach[1], error_type=breach[0],
                       seconds=time.perf_counter() - start)
    outputs: dict[str, Metrics] = {}
    for name, spec in expected_specs.items():
        a = actual[name]
        if tuple(a.shape) != spec.shape or a.dtype != spec.dtype:
            raise ContractViolation(
                f"kernel {kernel.name!r} returned output {name!r} as {a.dtype} "
                f"{list(a.shape)}; target {target.name!r} expects {spec.dtype} "
                f"{list(spec.shape)} (signature {target.signature})"
            )
        if a.device.type != _device_type(job.device):
            raise ContractViolation(
                f"kernel {kernel.name!r} returned output {name!r} on {a.device}; it ran with "
                f"inputs on {job.device} and must return its outputs there"
            )
        comparator = with_overrides(target.comparators[name], job.comparator)
        try:
            outputs[name] = compare(a, expected[name], comparator, full=job.full_metrics)
        except ShapeMismatch as exc:
            raise ContractViolation(f"oracle {oracle.name!r}, output {name!r}: {exc}") from None
    status = Status.PASS if all(m.passed for m in outputs.values()) else Status.FAIL
    if status == Status.FAIL:
        # A stored finding shows every output in full, the passing ones too.
        for name, m in outputs.items():
            if not m.complete:
                outputs[name] = compare(actual[name], expected[name],
                                        with_overrides(target.comparators[name], job.comparator))
    features = _features(target, cpu_inputs, actual, expected)
    dtypes = ({name: str(actual[name].dtype).removeprefix("torch.") for name in outputs}
              if status == Status.FAIL else {})
    return Outcome(status, outputs, seconds=time.perf_counter() - start, features=features,
                   dtypes=dtypes)


def _expected_specs(target: Target, case: Mapping[str, Any],
                    copy: SeedCopy | None) -> Mapping[str, OutputSpec]:
    """The outputs `target` expects of `case`, computed once per batch of copies (which differ
    only in their seed). Raises CaseError when the target refuses the case."""
    shared = copy.batch.shared if copy is not None else None
    if shared is not None and "expect" in shared:
        return shared["expect"]  # type: ignore[no-any-return]
    try:
        specs = target.expect(dict(case))
    except Exception as exc:
        raise CaseError(
            f"case does not fit target {target.name!r}: {type(exc).__name__}: {exc}"
        ) from None
    if shared is not None:
        shared["expect"] = specs
    return specs


@functools.lru_cache(maxsize=16)
def _device_type(device: str) -> str:
    """The type of device `device` names, e.g. "cuda" for "cuda:0"."""
    return torch.device(device).type


def _features(target: Target, inputs: Mapping[str, torch.Tensor],
              actual: Mapping[str, torch.Tensor],
              expected: Mapping[str, torch.Tensor]) -> dict[str, float]:
    if target.features is None:
        return {}
    try:
        with torch.no_grad():
            found = target.features(inputs, actual, expected)
        return {str(k): float(v) for k, v in found.items()}
    except Exception as exc:
        raise CaseError(f"target {target.name!r}: its features function raised "
                        f"{type(exc).__name__}: {exc}") from None


class InProcessExecutor:
    """Runs jobs in this process, caching resolved targets and callables. The fast default."""

    def __init__(self) -> None:
        self._resolved: dict[tuple[str, str, str], tuple[Target, Variant, Variant]] = {}
        # Each case frees what the next allocates again: keep it in the process.
        keep_freed_memory()

    def resolve(self, job: Job) -> tuple[Target, Variant, Variant]:
        """The target, kernel and oracle a job names, after loading the job's plugins.
        Raises UnknownTarget, UnknownVariant, BadCallable, PluginError."""
        key = (job.target, job.kernel, job.oracle)
        if key not in self._resolved:
            registry.load_recorded_plugins(job.plugins)  # each through its stand-in
            target = registry.get(job.target)
            self._resolved[key] = (
                target,
                registry.resolve(target, "kernel", job.kernel),
                registry.resolve(target, "oracle", job.oracle),
            )
        return self._resolved[key]

    def evaluate(self, jobs: Sequence[Job]) -> list[Outcome]:
        """See `Executor.evaluate`. Consecutive jobs that differ only in their case's seed
        build their small inputs together (`seed_copies`)."""
        return [run_case(*self.resolve(job), job, copy)
                for job, copy in zip(jobs, seed_copies(jobs), strict=True)]

    def close(self) -> None:
        """Nothing to release in-process."""


def case_outputs(job: Job) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Run `job` the way `run_case` does (materialise from the seed, kernel on job.device,
    oracle where `oracle_inputs` puts it) but return the tensors instead of metrics: (kernel
    outputs, oracle outputs), each by output name and moved to the CPU. For callers that
    need element-wise data, such as the report's error histograms. An exception raised
    inside the kernel or oracle propagates. Raises UnknownTarget, UnknownVariant,
    BadCallable, CaseError, ContractViolation."""
    target, kernel, oracle = InProcessExecutor().resolve(job)
    cpu_inputs, params = materialise_case(target, job.case)
    with torch.no_grad():
        got = kernel(**to_device(cpu_inputs, job.device), **params)
        ref = oracle(**oracle_inputs(target, oracle, cpu_inputs, job.device), **params)
    actual = as_outputs(got, target, f"kernel {kernel.name!r}")
    expected = as_outputs(ref, target, f"oracle {oracle.name!r}")
    return ({name: t.detach().cpu() for name, t in actual.items()},
            {name: t.detach().cpu() for name, t in expected.items()})

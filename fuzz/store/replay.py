"""Replay: rerun stored findings and update their status.

A stored case rejoins the data flow at "materialise": same case, same seed, same bits. The
plugins a finding recorded are loaded for it, and its kernel and oracle references are stored
in a form that resolves from any directory (`kfuzz.targets.references`). A replay with another kernel
or oracle than the finding's is a substitute replay: recorded as such, it leaves the finding's
own status alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kfuzz.enums import Failure, ReplayStatus
from kfuzz.errors import ContractViolation, CorpusError, KfuzzError, did_you_mean
from kfuzz.execute.executor import Executor, InProcessExecutor, Job, contract_outcome
from kfuzz.settings import DEFAULT_CASE_TIMEOUT
from kfuzz.store.corpus import CorpusStore
from kfuzz.store.rows import decode_row, short_id
from kfuzz.targets import registry
from kfuzz.targets.references import normal_reference

if TYPE_CHECKING:
    from kfuzz.execute.isolation import IsolatedExecutor

# Replay statuses: the finding still fails ("fail", stays open), passes now ("pass",
# marked fixed), or could not be run ("error": unknown target, malformed row, ...).
STATUS_WORDS = {ReplayStatus.FAIL: "still failing", ReplayStatus.PASS: "fixed",
                ReplayStatus.ERROR: "error"}


@dataclass
class ReplayResult:
    """One replayed finding. substitute: replayed with another kernel or oracle than the
    finding's own (its status was left alone). outputs: the replay's metrics by output name
    (what `kfuzz.present.junit.outputs_text` shows), left out of `to_dict`."""

    fingerprint: str
    target: str
    kernel: str
    oracle: str
    status: ReplayStatus
    mismatch_ratio: float | None = None
    stored_ratio: float | None = None
    error: str | None = None
    substitute: bool = False
    outputs: dict[str, Any] | None = field(default=None, repr=False)
    # Wall time of the replay (decoding, the kernel, the oracle, the comparison).
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = dict(self.__dict__, status=self.status.value, id=short_id(self.fingerprint),
                   verdict=STATUS_WORDS[self.status])
        del out["outputs"]
        return out


def replay(
    store: CorpusStore,
    *,
    target: str | None = None,
    finding_id: str | None = None,
    kernel: str | None = None,
    oracle: str | None = None,
    device: str = "cpu",
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | None = None,
    case_timeout: float | None = None,
    record: bool = True,
) -> list[ReplayResult]:
    """Replay the stored findings (all, one target's, or one by id prefix) with their stored
    kernel and oracle, or `kernel`/`oracle` instead (a substitute replay), and record each
    result (unless not `record`: then the store may be read-only and nothing is written).
    Each finding loads the plugins it recorded, or the `--plugin`s given here that stand in
    for them (`kfuzz.targets.stand_in`). A finding that cannot be run gets status "error"
    and the others go on. Crash and
    timeout findings run in a worker process even when `executor` runs in-process; a timeout
    finding gets `case_timeout`, or else the limit it was found with. Raises CorpusError for
    an id that matches no finding, or a target that has none (naming the close ones)."""
    executor = executor or InProcessExecutor()
    isolated: IsolatedExecutor | None = None
    kernel = normal_reference(kernel) if kernel else None
    oracle = normal_reference(oracle) if oracle else None
    if finding_id:
        rows = [store.raw(store.resolve_id(finding_id))]
    else:
        rows = list(store.findings(target=target))
        if target and not rows:
            known = store.distinct("target")
            raise CorpusError(
                f"no finding of target {target!r} in {str(store.path)!r}"
                + (f"; targets with findings: {', '.join(known)}" if known else " (it is empty)")
                + did_you_mean(target, known)
            )
    results = []
    try:
        for i, raw in enumerate(rows):
            use = executor
            if raw.get("failure") in (Failure.CRASH, Failure.TIMEOUT) and isinstance(
                    executor, InProcessExecutor):
                # A case that crashed or hung once must not take the replaying process down.
                from kfuzz.run.executors import make_executor

                isolated = isolated or make_executor(  # type: ignore[assignment]
                    isolate=True, plugins=registry.given_plugins())  # the worker's stand-ins
                isolated.case_timeout = (case_timeout or raw.get("timeout")
                                         or DEFAULT_CASE_TIMEOUT)
                use = isolated
            results.append(_replay_one(store, raw, kernel, oracle, device, use, record))
            if progress:
                progress(i + 1, len(rows))
    finally:
        if isolated is not None:
            isolated.close()
    return results


def _replay_one(
    store: CorpusStore, raw: dict[str, Any], kernel: str | None, oracle: str | None,
    device: str, executor: Executor, record: bool = True,
) -> ReplayResult:
    began = time.perf_counter()
    key = raw["fingerprint"]
    use_kernel = kernel or raw.get("kernel") or "?"
    use_oracle = oracle or raw.get("oracle") or "?"
    result = ReplayResult(key, raw.get("target") or "?", use_kernel, use_oracle,
                          ReplayStatus.ERROR, stored_ratio=raw.get("mismatch_ratio"))
    try:
        row = decode_row(raw)
        if not isinstance(row.get("case"), dict):
            raise KfuzzError(f"finding {short_id(key)}: stored case is not a JSON object")
        plugins = row.get("plugins") or []
        if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
            raise KfuzzError(f"finding {short_id(key)}: stored plugins are not a list of names")
        # Full metrics for every output: the replay is stored, passing or not.
        job = Job(row["target"], use_kernel, use_oracle, row["case"], row.get("comparator"),
                  device, full_metrics=True, plugins=tuple(plugins))
        try:
            outcome = executor.evaluate([job])[0]
        except ContractViolation as exc:
            # The kernel breaks its output contract on this case: it still fails.
            outcome = contract_outcome(exc)
    except KfuzzError as exc:
        result.error = str(exc)
        result.seconds = time.perf_counter() - began
        result.substitute = _record(store, raw, record, status=ReplayStatus.ERROR,
                                    kernel=use_kernel, oracle=use_oracle, outcome=None,
                                    error=result.error)
        return result
    result.status = ReplayStatus.FAIL if outcome.failed else ReplayStatus.PASS
    if outcome.error:
        result.error = outcome.error
    result.mismatch_ratio = outcome.worst_ratio()
    result.outputs = outcome.to_dict()["outputs"]
    result.seconds = time.perf_counter() - began
    result.substitute = _record(store, raw, record, status=result.status, kernel=use_kernel,
                                oracle=use_oracle, outcome=outcome.to_dict(), error=outcome.error)
    return result


def _record(store: CorpusStore, raw: dict[str, Any], record: bool, *, kernel: str, oracle: str,
            **replay: Any) -> bool:
    """Record one replay of the finding `raw` (unless not `record`); True for a substitute
    replay (another kernel or oracle than the finding's own)."""
    if record:
        return store.record_replay(raw["fingerprint"], kernel=kernel, oracle=oracle, **replay)
    return kernel != raw.get("kernel") or oracle != raw.get("oracle")


def exit_code(results: list[ReplayResult], *, accept_errors: bool = False) -> int:
    """The exit status of a replay: EXIT_ERROR (3) when a finding could not be replayed
    (unless accept_errors), else 1 when one still fails, else 0."""
    if not accept_errors and any(r.status == ReplayStatus.ERROR for r in results):
        return EXIT_ERROR
    return 1 if any(r.status == ReplayStatus.FAIL for r in results) else 0


# A replay that could not run a finding (unknown target, missing plugin or kernel file,
# malformed row): the corpus cannot be checked here, which CI must not read as a pass.
EXIT_ERROR = 3

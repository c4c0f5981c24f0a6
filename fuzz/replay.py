"""Replay: rerun stored findings and update their status.

A stored case rejoins the data flow at "materialise": same case, same seed, same bits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kfuzz.corpus import CorpusStore, decode_row
from kfuzz.enums import Failure, ReplayStatus
from kfuzz.errors import KfuzzError
from kfuzz.executor import Executor, InProcessExecutor, Job

if TYPE_CHECKING:
    from kfuzz.isolation import IsolatedExecutor

# Replay statuses: the finding still fails ("fail", stays open), passes now ("pass",
# marked fixed), or could not be run ("error": unknown target, malformed row, ...).
STATUS_WORDS = {ReplayStatus.FAIL: "still failing", ReplayStatus.PASS: "fixed",
                ReplayStatus.ERROR: "error"}


@dataclass
class ReplayResult:
    """One replayed finding."""

    fingerprint: str
    target: str
    kernel: str
    oracle: str
    status: ReplayStatus
    mismatch_ratio: float | None = None
    stored_ratio: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dict(self.__dict__, status=self.status.value, id=self.fingerprint[:12],
                    verdict=STATUS_WORDS[self.status])


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
) -> list[ReplayResult]:
    """Replay the stored findings (all, one target's, or one by id prefix) with their stored
    kernel and oracle, or `kernel`/`oracle` instead, and record each result. A finding that
    cannot be run gets status "error" and the others go on. Crash and timeout findings run in
    a worker process even when `executor` runs in-process; a timeout finding gets
    `case_timeout`, or else the limit it was found with. Raises CorpusError for a bad id."""
    executor = executor or InProcessExecutor()
    isolated: IsolatedExecutor | None = None
    if finding_id:
        rows = [store.raw(store.resolve_id(finding_id))]
    else:
        rows = list(store.findings(target=target))
    results = []
    try:
        for i, raw in enumerate(rows):
            use = executor
            if raw.get("failure") in (Failure.CRASH, Failure.TIMEOUT) and isinstance(
                    executor, InProcessExecutor):
                # A case that crashed or hung once must not take the replaying process down.
                from kfuzz.isolation import IsolatedExecutor

                isolated = isolated or IsolatedExecutor()
                isolated.case_timeout = case_timeout or raw.get("timeout") or 60.0
                use = isolated
            results.append(_replay_one(store, raw, kernel, oracle, device, use))
            if progress:
                progress(i + 1, len(rows))
    finally:
        if isolated is not None:
            isolated.close()
    return results


def _replay_one(
    store: CorpusStore, raw: dict[str, Any], kernel: str | None, oracle: str | None,
    device: str, executor: Executor,
) -> ReplayResult:
    key = raw["fingerprint"]
    use_kernel = kernel or raw.get("kernel") or "?"
    use_oracle = oracle or raw.get("oracle") or "?"
    result = ReplayResult(key, raw.get("target") or "?", use_kernel, use_oracle,
                          ReplayStatus.ERROR, stored_ratio=raw.get("mismatch_ratio"))
    try:
        row = decode_row(raw)
        if not isinstance(row.get("case"), dict):
            raise KfuzzError(f"finding {key[:12]}: stored case is not a JSON object")
        # Full metrics for every output: the replay is stored, passing or not.
        job = Job(row["target"], use_kernel, use_oracle, row["case"], row.get("comparator"),
                  device, full_metrics=True)
        outcome = executor.evaluate([job])[0]
    except KfuzzError as exc:
        result.error = str(exc)
        store.record_replay(key, status=ReplayStatus.ERROR, kernel=use_kernel, oracle=use_oracle,
                            outcome=None, error=result.error)
        return result
    result.status = ReplayStatus.FAIL if outcome.failed else ReplayStatus.PASS
    if outcome.error:
        result.error = outcome.error
    result.mismatch_ratio = outcome.worst_ratio()
    store.record_replay(key, status=result.status, kernel=use_kernel, oracle=use_oracle,
                        outcome=outcome.to_dict(), error=outcome.error)
    return result

"""How a campaign's executor is built: `ExecutorSpec` (plain data that travels to worker
processes and Ray tasks) and `make_executor`, the one place executors are built."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kfuzz.execute.executor import Executor, InProcessExecutor
from kfuzz.settings import DEFAULT_CASE_TIMEOUT


@dataclass(frozen=True)
class ExecutorSpec:
    """How to build the executor that runs a campaign's cases; plain data, so that it travels
    to worker processes and Ray tasks. isolate: a worker process per executor (a crash or a
    hang becomes a finding); case_timeout implies it. plugins: what the worker must load."""

    isolate: bool = False
    case_timeout: float | None = None
    plugins: tuple[str, ...] = ()

    def build(self) -> Executor:
        """A new executor (see `make_executor`)."""
        return make_executor(isolate=self.isolate, case_timeout=self.case_timeout,
                             plugins=self.plugins)


def make_executor(*, isolate: bool = False, case_timeout: float | None = None,
                  plugins: Sequence[str] = ()) -> Executor:
    """The one place executors are built: in-process, or in a worker process with `isolate`
    or a `case_timeout` (default DEFAULT_CASE_TIMEOUT seconds when isolated). Raises
    KfuzzError for a case_timeout that is not positive."""
    if not (isolate or case_timeout):
        return InProcessExecutor()
    from kfuzz.execute.isolation import IsolatedExecutor

    return IsolatedExecutor(case_timeout=case_timeout or DEFAULT_CASE_TIMEOUT, plugins=plugins)

"""The isolated executor: kernels and oracles run in a worker process.

Workers are forked from a forkserver that has imported torch (see `kfuzz.execute.worker`), so replacing
one is cheap. A kernel that segfaults, aborts or exits takes only its worker down: the job
becomes a `crash` outcome (the signal or exit code and the tail of the worker's stderr), a job
that runs past the case timeout becomes a `timeout` outcome (the worker is killed), and a fresh
worker serves the next job. The search treats both as findings and shrinks them like any other.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from kfuzz import errors
from kfuzz.enums import Status
from kfuzz.execute.executor import Job, Outcome
from kfuzz.settings import DEFAULT_CASE_TIMEOUT

STDERR_TAIL = 2000
# Device errors leave a CUDA context unusable: the worker is replaced after one.
POISONING = ("CUDA error", "device-side assert", "CUBLAS_STATUS", "cuDNN error")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_CONTEXT: Any = None


def _context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        # forkserver, not fork: the server is single-threaded when it forks, so a child never
        # inherits a lock held by one of torch's threads in this process.
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(["kfuzz.execute.worker"])
    return _CONTEXT


class _Worker:
    def __init__(self, plugins: Sequence[str], start_timeout: float) -> None:
        ctx = _context()
        fd, self.stderr_path = tempfile.mkstemp(prefix="kfuzz-worker-", suffix=".log")
        os.close(fd)
        self.conn, child = ctx.Pipe()
        from kfuzz.execute import worker

        self.proc = ctx.Process(target=worker.serve, daemon=True,
                                args=(child, self.stderr_path, sys.path, list(plugins)))
        self.proc.start()
        child.close()
        reply = self.read(start_timeout)
        if not isinstance(reply, dict) or not reply.get("ready"):
            tail = self.stderr_tail()
            self.kill()
            raise errors.KfuzzError(
                f"the kernel worker process failed to start ({reply!r}); its stderr ends: "
                f"{tail[-300:]!r}"
            )

    def alive(self) -> bool:
        return self.proc.is_alive()

    def submit(self, job: Job) -> None:
        self.conn.send_bytes(json.dumps({"job": asdict(job)}).encode())

    def read(self, timeout: float | None) -> dict[str, Any] | str:
        """The next reply, "eof" when the worker died, or "timeout"."""
        try:
            if not self.conn.poll(timeout):
                return "timeout"
            return json.loads(self.conn.recv_bytes())
        except (EOFError, ConnectionResetError, BrokenPipeError):
            return "eof"

    def exit_code(self) -> int:
        self.proc.join(timeout=10)
        return self.proc.exitcode if self.proc.exitcode is not None else 0

    def stderr_tail(self) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(f.tell() - STDERR_TAIL, 0))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=10)
        self.conn.close()
        try:
            os.unlink(self.stderr_path)
        except OSError:
            pass


class IsolatedExecutor:
    """Runs each job in a worker process (see the module docstring).

    case_timeout: seconds a job may run before it is a `timeout` outcome (None: no limit).
    plugins: plugin files or modules the worker loads, as `--plugin` did in this process.
    """

    def __init__(self, *, case_timeout: float | None = DEFAULT_CASE_TIMEOUT, plugins: Sequence[str] = (),
                 start_timeout: float = 120.0) -> None:
        if case_timeout is not None and case_timeout <= 0:
            raise errors.KfuzzError(f"--case-timeout {case_timeout} must be > 0 seconds")
        self.case_timeout = case_timeout
        self.plugins = list(plugins)
        self.start_timeout = start_timeout
        self.worker: _Worker | None = None
        self.restarts = 0

    def _worker(self) -> _Worker:
        if self.worker is None or not self.worker.alive():
            if self.worker is not None:
                self.worker.kill()
                self.restarts += 1
            self.worker = _Worker(self.plugins, self.start_timeout)
        return self.worker

    def _replace(self) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker = None
            self.restarts += 1

    def evaluate(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Run each job in the worker; see `kfuzz.execute.executor.Executor.evaluate`. Raises the
        KfuzzError the worker reports (unknown names, a broken output contract)."""
        return [self._one(job) for job in jobs]

    def _one(self, job: Job) -> Outcome:
        worker = self._worker()
        start = time.perf_counter()
        worker.submit(job)
        reply = worker.read(self.case_timeout)
        seconds = time.perf_counter() - start
        if reply == "timeout":
            self._replace()
            return Outcome(Status.TIMEOUT, error=f"Timeout: no result after {self.case_timeout:g}s",
                           timeout=self.case_timeout, seconds=seconds)
        if reply == "eof":
            code = worker.exit_code()
            signal_name = _signal_name(-code) if code < 0 else None
            how = f"killed by {signal_name}" if signal_name else f"exited with status {code}"
            tail = worker.stderr_tail().strip()
            self._replace()
            return Outcome(Status.CRASH, error=f"Crash: worker {how}; stderr: {tail[-STDERR_TAIL:]}",
                           signal=signal_name and signal_name.split()[-1],
                           exit_code=None if signal_name else code, seconds=seconds)
        assert isinstance(reply, dict)
        if "kfuzz_error" in reply:
            err = reply["kfuzz_error"]
            cls = getattr(errors, err["type"], errors.KfuzzError)
            if not (isinstance(cls, type) and issubclass(cls, errors.KfuzzError)):
                cls = errors.KfuzzError
            exc = cls.__new__(cls)
            Exception.__init__(exc, err["message"])  # the message is already formatted
            raise exc
        outcome = Outcome.from_dict(reply["outcome"])
        if outcome.error and any(p in outcome.error for p in POISONING):
            self._replace()
        return outcome

    def close(self) -> None:
        """Stop the worker."""
        if self.worker is not None:
            self.worker.kill()
            self.worker = None

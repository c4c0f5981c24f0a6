"""The worker process of `kfuzz.execute.isolation.IsolatedExecutor`.

Workers are forked from a forkserver that has already imported torch, so replacing one after
a crash costs milliseconds, not an interpreter start. Messages are JSON text over a pipe:
the parent sends {"job": {...}}, the worker answers {"outcome": {...}} or
{"kfuzz_error": {"type": ..., "message": ...}}. A worker's fds 1 and 2 go to a file of its
own, so that a kernel's prints cannot reach the protocol and a crash leaves its stderr tail.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import torch  # noqa: F401  (imported here so that the forkserver preloads it)
from kfuzz import errors
from kfuzz.execute.executor import InProcessExecutor, Job
from kfuzz.targets import registry


def serve(conn: Any, stderr_path: str, sys_path: list[str], plugins: list[str]) -> None:
    """Serve jobs from `conn` until it closes. Runs in the worker process."""
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 2)
    os.dup2(fd, 1)
    for entry in reversed(sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    registry.load_plugins(plugins)  # as given: stand-ins for recorded plugins here too
    executor = InProcessExecutor()
    conn.send_bytes(json.dumps({"ready": True}).encode())
    while True:
        try:
            message = json.loads(conn.recv_bytes())
        except EOFError:
            return
        job = Job(**message["job"])
        try:
            reply: dict[str, Any] = {"outcome": executor.evaluate([job])[0].to_dict()}
        except errors.KfuzzError as exc:
            reply = {"kfuzz_error": {"type": type(exc).__name__, "message": str(exc)}}
        conn.send_bytes(json.dumps(reply, allow_nan=False).encode())

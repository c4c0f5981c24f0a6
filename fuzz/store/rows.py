"""Rows of a corpus as data: JSON columns encoded and decoded (a blob where JSON belongs is
refused, never interpreted), the software versions and plugins a finding records, the current
time, and the latest replay of each finding."""

from __future__ import annotations

import datetime as dt
import json
import platform
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kfuzz.errors import CorpusError

if TYPE_CHECKING:
    from kfuzz.execute.findings import Finding
    from kfuzz.store.corpus import CorpusStore

# A finding's short id: the first SHORT_ID characters of its fingerprint, wherever one is
# printed or taken (`kfuzz corpus show ID`).
SHORT_ID = 12
JSON_COLUMNS = ("case", "comparator", "metrics", "shrink", "versions", "plugins", "attribution")
RUN_JSON_COLUMNS = ("argv", "targets", "versions", "results", "plugins")


def short_id(fingerprint: str) -> str:
    """A finding's short id.

    Args:
        fingerprint: the finding's fingerprint (or any longer id).

    Returns:
        Its first SHORT_ID characters.
    """
    return fingerprint[:SHORT_ID]


def json_safe(value: Any) -> Any:
    """`value` for json.dumps: binary data (never decoded) becomes a short description."""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes of binary data>"
    return value


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def versions(device: str = "cpu") -> dict[str, str]:
    """Versions of the software a finding was made with."""
    import torch
    from kfuzz import __version__

    name = "cpu"
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    found = {
        "kfuzz": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "device": name, "machine": platform.machine(),
    }
    # Triton's numerics (its CPU interpreter's casts above all) change between releases;
    # recorded only when a kernel has imported it, so that this never imports it.
    triton = sys.modules.get("triton")
    if triton is not None:
        found["triton"] = str(getattr(triton, "__version__", "?"))
    return found


def dumps(obj: Any) -> str | None:
    return None if obj is None else json.dumps(obj, sort_keys=True, allow_nan=False)


def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """A findings row with its JSON columns parsed. A malformed JSON column raises
    CorpusError naming the row and the column."""
    out = dict(row)
    for column in JSON_COLUMNS:
        value = out.get(column)
        if isinstance(value, bytes):
            # Never unpickled or otherwise interpreted: a blob where JSON belongs is refused.
            raise CorpusError(
                f"finding {short_id(str(out.get('fingerprint')))}: column {column!r} holds "
                f"{len(value)} bytes of binary data, not JSON; delete that row"
            )
        if isinstance(value, str):
            try:
                out[column] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise CorpusError(
                    f"finding {short_id(str(out.get('fingerprint')))}: column {column!r} holds "
                    f"malformed JSON ({exc.msg}); fix or delete that row"
                ) from None
    return out


def loads_or(value: Any, default: Any) -> Any:
    """A JSON column of a run or replay, or `default` when it is empty, binary or malformed
    (these rows are history: one bad row must not hide the rest)."""
    if not isinstance(value, str):
        return default
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return default


def case_size(finding: Finding) -> int | None:
    """The size of a finding's case by its target (None when the target cannot tell)."""
    from kfuzz.targets import registry

    try:
        return registry.get(finding.target).case_size(finding.case)
    except Exception:
        return None


def loaded_plugins() -> list[str]:
    # Read from the registry only when something has imported it (listing a corpus must not
    # import the targets, and a process that never loaded them loaded no plugin).
    registry = sys.modules.get("kfuzz.targets")
    return list(registry.loaded_plugins()) if registry is not None else []


def plugins_for(target: str) -> list[str] | None:
    registry = sys.modules.get("kfuzz.targets")
    found = list(registry.plugins_for(target)) if registry is not None else []
    return found or None


def replay_outputs(replay: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics of a replay row by output name, or None when absent or malformed."""
    value = loads_or(replay.get("metrics"), None)
    return value if isinstance(value, dict) else None


def latest_replays(store: CorpusStore, fingerprints: Sequence[str]) -> dict[str, dict[str, Any]]:
    """fingerprint -> its latest replay row, for those that have one."""
    out = {}
    for key in fingerprints:
        rows = store.replays(key, newest_first=True, limit=1)
        if rows:
            out[key] = rows[0]
    return out

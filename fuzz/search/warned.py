"""Python warnings raised while a campaign runs, counted instead of printed.

A fuzzer feeds the code under test NaNs, infinities and empty rows on purpose, and libraries
warn about them (NumPy's "All-NaN slice encountered" inside Triton's interpreter, say), once
per case: printed, they bury a run's progress and summary. `Warned` replaces
`warnings.showwarning` for the campaign's duration and counts each kind (category, message,
file and line); the run summary and `--json` report them. Python's warning filters still
apply: a warning they ignore is not counted, and one they turn into an error (`-W error`)
still raises.
"""

from __future__ import annotations

import warnings
from types import TracebackType
from typing import Any

# Kinds reported per campaign, the most frequent first; the rest are counted together.
KINDS_KEPT = 10


class Warned:
    """A context manager: inside it, warnings that Python's filters let through are counted
    by kind, not printed. `kinds()` after (or during) the block."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str, int], int] = {}
        self._saved: Any = None

    def __enter__(self) -> Warned:
        self._saved = warnings.catch_warnings()
        self._saved.__enter__()
        warnings.showwarning = self._count
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._saved.__exit__(kind, exc, tb)

    def _count(self, message: Warning | str, category: type[Warning], filename: str,
               lineno: int, file: Any = None, line: str | None = None) -> None:
        key = (category.__name__, " ".join(str(message).split())[:300], filename, lineno)
        self._counts[key] = self._counts.get(key, 0) + 1

    def kinds(self) -> list[dict[str, Any]]:
        """Each kind counted, the most frequent first (at most KINDS_KEPT; then one entry
        {"category": "...", "others": n kinds, "count": m} for the rest)."""
        ranked = sorted(self._counts.items(), key=lambda item: -item[1])
        out: list[dict[str, Any]] = [
            {"category": c, "message": m, "where": f"{f}:{n}", "count": k}
            for (c, m, f, n), k in ranked[:KINDS_KEPT]]
        rest = ranked[KINDS_KEPT:]
        if rest:
            out.append({"category": "...", "others": len(rest),
                        "count": sum(k for _, k in rest)})
        return out

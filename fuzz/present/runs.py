"""The report's runs table: one row per `kfuzz run` stored in the corpus, with the seed and the
time budget it ran with and what it examined."""

from __future__ import annotations

import math
from typing import Any

from kfuzz.present.text import seconds

RUN_HEADERS = ["run", "started", "profile", "seed", "budget", "examples", "targets", "findings",
               "status"]


def campaigns(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of a run's stored results (a runs-table row) that ran a campaign, not the
    skipped or failed targets'."""
    return [c for c in run.get("results") or [] if isinstance(c, dict)
            and c.get("state", "run") == "run" and "skipped" not in c and "failed" not in c]


def _number(value: Any) -> float | None:
    """A stored number (or numeric string) as a finite float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _argv_budget(argv: Any) -> float | None:
    """The value of `--budget` (or `--budget=S`, or an abbreviation argparse accepts, such as
    `--bud`) in a run's stored argv, or None."""
    if not isinstance(argv, list):
        return None
    words = [str(w) for w in argv]
    for i, word in enumerate(words):
        name, eq, value = word.partition("=")
        if len(name) >= 4 and "--budget".startswith(name):
            return _number(value) if eq else _number(words[i + 1]) if i + 1 < len(words) else None
    return None


def run_budget(run: dict[str, Any]) -> str:
    """A run's time budget as the runs table shows it: `--budget` from its argv, and with
    several targets the share each got (the `budget` its results store per target), e.g.
    "60 s (ops.a 30 s, ops.b 29 s)"; the shares alone where argv has no `--budget`; "-" for
    a run bounded by examples only."""
    entries = [c for c in run.get("results") or [] if isinstance(c, dict)]
    known: list[tuple[str, float]] = []
    for entry in entries:
        share = _number(entry.get("budget"))
        if share is not None:
            known.append((str(entry.get("entry") or entry.get("target")), share))
    total = _argv_budget(run.get("argv"))
    if len({b for _, b in known}) == 1 and len(known) == len(entries):
        each = seconds(known[0][1]) + (" each" if len(known) > 1 else "")
    else:
        each = ", ".join(f"{t} {seconds(b)}" for t, b in known)
    if total is None:
        return each or "-"
    return seconds(total) + (f" ({each})" if each and len(entries) > 1 else "")


def run_seed(run: dict[str, Any]) -> str:
    """The run's seed, else the seeds its campaigns ran with."""
    if run.get("seed") is not None:
        return str(run["seed"])
    seeds = list(dict.fromkeys(str(c["seed"]) for c in campaigns(run) if c.get("seed") is not None))
    return ", ".join(seeds) or "-"


def run_cells(run: dict[str, Any]) -> list[str]:
    """A run's cells under RUN_HEADERS, for the report's runs table."""
    examples = run.get("examples")
    if examples is None:
        counts = [c.get("examples") for c in campaigns(run)]
        examples = sum(int(n) for n in counts if isinstance(n, int)) if counts else None
    return [str(run["id"]), str(run.get("started")), str(run.get("profile")), run_seed(run),
            run_budget(run), "-" if examples is None else str(examples),
            ", ".join(map(str, run.get("targets") or [])), str(run.get("findings")),
            str(run.get("status"))]


COVERAGE_HEADERS = ["run", "target", "cases", "dtypes", "sizes", "special values",
                    "index layouts", "never reached"]


def _counts(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return "-"
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def coverage_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    """One row per campaign that stored its coverage (`kfuzz.search.coverage`), newest run
    first as `runs` are: what its cases exercised and what they never reached."""
    rows = []
    for run in runs:
        for c in campaigns(run):
            cov = c.get("coverage")
            if not isinstance(cov, dict) or not cov:
                continue
            never = cov.get("never_reached") or []
            rows.append([str(run.get("id", "")), str(c.get("entry") or c.get("target", "")),
                         str(cov.get("cases", 0)), _counts(cov.get("dtype")),
                         _counts(cov.get("size")), _counts(cov.get("special")),
                         _counts(cov.get("index")),
                         ", ".join(map(str, never)) if isinstance(never, list) and never
                         else "-"])
    return rows

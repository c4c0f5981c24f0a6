"""The closed sets of words kfuzz stores: outcome status, finding kind, failure, finding status
and replay status.

Each is a `str` enum whose values are the words stored in the corpus and printed, so stored
text is unchanged, a member equals its word (`Status.PASS == "pass"`), hashes like it, and
formats as it. Imports nothing heavy: the corpus and the CLI's corpus commands use it without
torch.
"""

from __future__ import annotations

from enum import Enum


class _Word(str, Enum):
    """A str enum that prints as its value (`f"{Status.PASS}"` is "pass", on every Python)."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(self, spec)


class Status(_Word):
    """What running one case gave."""

    PASS = "pass"  # every output within its comparator
    FAIL = "fail"  # at least one output over its max_ratio
    ERROR = "error"  # the kernel raised
    CONTRACT = "contract"  # the kernel wrote into an input or returned one of them
    CRASH = "crash"  # the worker process died (isolated executor)
    TIMEOUT = "timeout"  # the case ran past its time limit (isolated executor)


# Outcomes that carry no metrics: the case could not be judged.
UNJUDGED = frozenset({Status.ERROR, Status.CONTRACT, Status.CRASH, Status.TIMEOUT})


class Kind(_Word):
    """How a finding was made, best last: a raw failure as first seen (replaced by its shrunk
    case once shrinking ends, kept only if the run dies first), the worst case a campaign saw
    (peak), or the minimal case Hypothesis reduced a failure to (shrunk)."""

    RAW = "raw"
    PEAK = "peak"
    SHRUNK = "shrunk"

    @property
    def rank(self) -> int:
        """Higher is better: shrunk > peak > raw."""
        return list(Kind).index(self)


class Failure(_Word):
    """What kind of failure a finding is."""

    ERROR = "error"  # the kernel raised
    CRASH = "crash"
    TIMEOUT = "timeout"
    CONTRACT = "contract"
    NONFINITE = "nonfinite"  # a NaN/Inf mismatched
    MISMATCH = "mismatch"


class FindingStatus(_Word):
    """A stored finding's state: it failed when last run with its own kernel and oracle (open),
    or passed (fixed)."""

    OPEN = "open"
    FIXED = "fixed"


class ReplayStatus(_Word):
    """One replay's verdict: the case still fails, passes now, or could not be run."""

    FAIL = "fail"
    PASS = "pass"
    ERROR = "error"

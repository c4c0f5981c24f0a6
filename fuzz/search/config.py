"""What a campaign is asked to do (`CampaignConfig`) and what it did (`CampaignResult`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kfuzz.cases.strategies import EXCLUDABLE
from kfuzz.errors import KfuzzError, OptionError
from kfuzz.execute.findings import Finding
from kfuzz.settings import PROFILES


@dataclass
class CampaignConfig:
    """What to fuzz and for how long. kernel/oracle None: the target's defaults.
    comparator: Comparator fields that override each output's default (e.g. {"mode": "exact",
    "max_ratio": 0.005}); None keeps the defaults.
    max_examples and budget (seconds) may both be set; the first one spent ends the search.
    seed None: a random seed, reported in the result so that the run can be repeated.
    pins: case fields held at fixed values (e.g. {"shape": [4, 64, 512]}); the search and the
    shrinker vary only the other fields.
    exclude: value regimes left out of the search (names of `kfuzz.cases.strategies.EXCLUDABLE`, e.g.
    "overflow"): regimes a kernel does not promise to handle.
    time_limit (seconds): a bound on the campaign's whole wall time, search and shrinking
    together (`budget` bounds the search alone); a shrink still running at the limit stores
    the smallest failing case it has. `kfuzz run --budget` sets both to the target's share.
    ends_at: a wall-clock time (`time.time()`) by which the campaign ends, whatever else it
    has left: the end of the whole run, the same in every worker process.
    entry: the run entry's name when it names its kernel ("ops.softmax@ort_softmax"); None:
    the target's name."""

    target: str
    kernel: str | None = None
    oracle: str | None = None
    comparator: Mapping[str, Any] | None = None
    profile: str = "dev"
    max_examples: int | None = None
    budget: float | None = None
    seed: int | None = None
    device: str = "cpu"
    batch: int | None = None
    max_numel: int | None = None
    shrink_seconds: float | None = None
    pins: Mapping[str, Any] | None = None
    exclude: Sequence[str] = ()
    time_limit: float | None = None
    ends_at: float | None = None
    entry: str | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise KfuzzError(
                f"unknown profile {self.profile!r}; choose from {', '.join(PROFILES)}"
            )
        for name in ("max_examples", "batch", "max_numel"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(name, value, " must be at least 1")
        unknown = sorted(set(self.exclude) - set(EXCLUDABLE))
        if unknown:
            raise OptionError("exclude", unknown[0],
                              f" is not a value regime; choose from {', '.join(EXCLUDABLE)}")
        for name in ("budget", "time_limit"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise OptionError(name, value, " must be a positive number of seconds")


@dataclass
class CampaignResult:
    """What a campaign did. stopped: "examples", "budget", "exhausted" (Hypothesis ran out
    of distinct cases) or "interrupted"."""

    target: str
    kernel: str
    oracle: str
    seed: int
    examples: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    peak_ratio: float = 0.0
    rounds: int = 0
    stopped: str = "examples"
    # Cases per Hypothesis example: the last example's, and the mean over the run.
    batch: int = 1
    batch_mean: float = 1.0
    # What the cases run covered (`kfuzz.search.coverage.Coverage.to_dict`).
    coverage: dict[str, Any] = field(default_factory=dict)
    # Python warnings raised while it ran, by kind (`kfuzz.search.warned.Warned.kinds`).
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (findings as fingerprints)."""
        return {
            "target": self.target, "kernel": self.kernel, "oracle": self.oracle,
            "seed": self.seed, "examples": self.examples, "seconds": round(self.seconds, 3),
            "examples_per_second": round(self.examples / self.seconds, 1) if self.seconds else None,
            "peak_ratio": self.peak_ratio, "rounds": self.rounds, "stopped": self.stopped,
            "batch": self.batch, "batch_mean": round(self.batch_mean, 2),
            "findings": [f.fingerprint for f in self.findings],
            "coverage": self.coverage,
            "warnings": self.warnings,
        }

"""A finding: a case whose outcome is over its comparator's threshold, and its identity."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kfuzz.enums import Failure, Kind, Status
from kfuzz.execute.executor import Outcome
from kfuzz.targets.references import normal_reference

# shrunk: the minimal case Hypothesis reduced a failure to; peak: the worst case seen on a
# target in a run; raw: a failure as first seen, replaced by its shrunk case once shrinking
# ends (kept only if the run dies first, so that nothing found is lost). See `Kind`.
KINDS = tuple(kind.value for kind in reversed(Kind))


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, NaN refused."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def fingerprint(target: str, kernel: str, oracle: str, case: Mapping[str, Any]) -> str:
    """The identity of a finding: sha256 hex of target, kernel, oracle and the case."""
    blob = canonical_json({"target": target, "kernel": kernel, "oracle": oracle, "case": case})
    return hashlib.sha256(blob.encode()).hexdigest()


def signature(outcome: Outcome) -> str | None:
    """A failure's signature, what one bug keeps across seeds and nights: the outcome's
    buckets (`Outcome.buckets`), sorted and comma-separated: per failing output its failure
    kind and error class (e.g. "y:mismatch:wrong", "y:nonfinite"), or the exception type,
    crash signal, timeout or contract breach. Nothing else of the case is stable enough: the
    dtype a shrunk case keeps and the value regimes still on in it differ from seed to seed
    for one kernel (README, "How it works"). None when a mismatch has no error class (an
    outcome without its outputs' dtypes or ULP data, as older records are): too coarse to
    tell bugs apart."""
    buckets = sorted(outcome.buckets())
    if not buckets or any(b.count(":") == 1 and b.endswith(":mismatch") for b in buckets):
        return None
    return ",".join(buckets)


@dataclass
class Finding:
    """A failing case with what produced it. kind: a `Kind` (a word such as "shrunk" is
    taken too). kernel and oracle: variant names or references, kept in their stored form
    (`kfuzz.targets.references.normal_reference`). comparator is the override the run used (None:
    each output's default comparator, recorded in the metrics)."""

    target: str
    kernel: str
    oracle: str
    case: dict[str, Any]
    outcome: Outcome
    kind: Kind = Kind.SHRUNK
    comparator: dict[str, Any] | None = None
    device: str = "cpu"
    shrink: dict[str, Any] = field(default_factory=dict)
    replaces: str | None = None
    # A chain's attribution of the failure to its stages (`kfuzz.chains.attribution`).
    attribution: dict[str, Any] | None = None
    # The id of the corpus row this finding went to (`CorpusStore.record_findings`): its own
    # fingerprint, or that of the open finding with its signature (or the open peak) it
    # updated. None until stored.
    stored_as: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.kind = Kind(self.kind)
        # One finding however the kernel's file was named (`f.py:fn`, `./f.py:fn`, its
        # absolute path), and one that resolves from another directory.
        self.kernel = normal_reference(self.kernel)
        self.oracle = normal_reference(self.oracle)

    @property
    def fingerprint(self) -> str:
        """See `fingerprint`."""
        return fingerprint(self.target, self.kernel, self.oracle, self.case)

    @property
    def signature(self) -> str | None:
        """See `signature`."""
        return signature(self.outcome)

    @property
    def failure(self) -> Failure:
        """The kind of failure (a `Failure`): "error" (the kernel raised), "crash", "timeout",
        "contract" (it wrote into or returned an input), "nonfinite" (a NaN/Inf mismatched) or
        "mismatch"."""
        if self.outcome.status not in (Status.PASS, Status.FAIL):
            return Failure(self.outcome.status.value)
        nonfinite = any(not m["passed"] and m["nonfinite_mismatches"]
                        for m in self.outcome.outputs.values())
        return Failure.NONFINITE if nonfinite else Failure.MISMATCH

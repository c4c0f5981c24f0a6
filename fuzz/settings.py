"""Run settings that the command line shows without importing the engine: the search profiles,
the default case timeout and the low-precision dtypes targets draw by default. Kept free of
torch and Hypothesis, so that `kfuzz --help` and the corpus commands start fast (`kfuzz.cli`
imports this, never `kfuzz.search`)."""

from __future__ import annotations

from dataclasses import dataclass

# Seconds a case may run in an isolated worker before it is a timeout finding.
DEFAULT_CASE_TIMEOUT = 60.0

# The dtypes targets draw their inputs in by default: where computing in the input dtype and
# upcasting to FP32 differ (for FP32 inputs both are the same computation). BF16 first: what
# kernel teams ship, and where shrinking heads.
LOW_PRECISION = ("bfloat16", "float16")


@dataclass(frozen=True)
class Profile:
    """Search settings by use: `ci` (reproducible, short), `dev` (desk), `nightly` (long).
    batch None: chosen while running (`kfuzz.search.batch.BatchSizer`)."""

    max_examples: int
    shrink_seconds: float
    batch: int | None
    fixed_seed: int | None = None
    isolate: bool = False


PROFILES: dict[str, Profile] = {
    # Reproducible by default: the same seed every run unless --seed says otherwise, and a
    # fixed batch (a measured one would depend on the machine's speed).
    "ci": Profile(max_examples=100, shrink_seconds=20.0, batch=1, fixed_seed=0),
    "dev": Profile(max_examples=200, shrink_seconds=30.0, batch=None),
    # Unattended: a kernel that crashes or hangs must not end the night.
    "nightly": Profile(max_examples=100_000, shrink_seconds=120.0, batch=None, isolate=True),
}

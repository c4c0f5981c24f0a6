"""Fresh draws: a Hypothesis backend on which every example is an independent draw.

Hypothesis' own generation spends most of a run on variations of examples it has already run.
After each new example it tries up to five mutations (one part of the example copied over
another part with the same label). From half of a run's examples on, it hill-climbs the
`hypothesis.target` scores from the best example so far. On four of kfuzz's targets, 8 to 14
cases in 100 of a 400-example round were new draws, against 94 to 98 in a fresh round
(`python -m bench.draws`; a new draw differs from the case before it in at least half of its
fields).

That suits failures that sit near each other in the case space. A precision fault that needs a
rare combination of independent choices (FP16 with a head dim of 128, opposite signs of q and
kv at a large magnitude, S = window + 1) is found in proportion to the number of independent
draws. The search therefore alternates fresh rounds, drawn here, with Hypothesis' own rounds,
where mutations and targeting climb the feedback scores.

The backend is Hypothesis' own provider under another name, "kfuzz-fresh": the same choice
distributions (boundary values, small values, the strategies' regime flags), seeded by the
run's seed, so a run repeats exactly. Under a backend other than "hypothesis" the engine asks
the provider for a whole example on every call, with no mutations and no hill-climbing.
Shrinking still runs on Hypothesis' provider. `fresh_settings()` is {} when the installed
Hypothesis has no backend API; the search then runs Hypothesis' rounds only.
"""

from __future__ import annotations

from typing import Any

BACKEND = "kfuzz-fresh"


def _register() -> bool:
    try:
        from hypothesis import settings
        from hypothesis.internal.conjecture.providers import (
            AVAILABLE_PROVIDERS,
            HypothesisProvider,
        )
    except ImportError:
        return False

    class FreshProvider(HypothesisProvider):  # type: ignore[misc, valid-type]
        """Hypothesis' provider; registered under its own name, every example is new."""

    AVAILABLE_PROVIDERS.setdefault(BACKEND, FreshProvider)
    try:
        settings(backend=BACKEND)
    except Exception:  # a Hypothesis without the `backend` setting
        return False
    return True


AVAILABLE = _register()


def fresh_settings() -> dict[str, Any]:
    """Keyword arguments of `hypothesis.settings` for a run of fresh draws ({} when the
    installed Hypothesis cannot)."""
    return {"backend": BACKEND} if AVAILABLE else {}

"""Shrinking a failing case to a small one that still fails: a session per failure
(`session`) over a case space (`space`), running the size-directed pass and its reductions
(`passes`, with the cuts of one size in `cuts`, the axes a size sets in `axes` and the cuts
of a cache to the rows its index sets name in `rows`) and the search for a smaller failure
(`witnesses`)."""

from kfuzz.shrink.cuts import index_set_reductions, smaller_steps
from kfuzz.shrink.passes import ShrinkResult, is_distribution, reductions, shrink, sizes
from kfuzz.shrink.rows import named_only, shared_rows
from kfuzz.shrink.session import PASSES, SessionResult, ShrinkPass, ShrinkSession
from kfuzz.shrink.space import CaseSpace
from kfuzz.shrink.witnesses import WitnessSearch

__all__ = ["PASSES", "CaseSpace", "SessionResult", "ShrinkPass", "ShrinkResult", "ShrinkSession",
           "WitnessSearch", "index_set_reductions", "is_distribution", "named_only", "reductions",
           "shared_rows", "shrink", "sizes", "smaller_steps"]

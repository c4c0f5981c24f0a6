"""Shrinking a failing case to a small one that still fails (`passes`: the size-directed
pass and its reductions)."""

from kfuzz.shrink.passes import ShrinkResult, is_distribution, reductions, shrink, sizes

__all__ = ["ShrinkResult", "is_distribution", "reductions", "shrink", "sizes"]

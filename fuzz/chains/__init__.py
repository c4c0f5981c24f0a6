"""Chains of kernels: stages wired by plain Python, fuzzed as one target, failures attributed to
the stage to fix (see docs/chains.md)."""

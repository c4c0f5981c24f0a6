"""Seeded faults for the bug-finding benchmarks, kept out of the installed package: kernels with
one fault each (`bench.faults.kernels`) and the `faults.*` targets that run them
(`bench.faults.targets`), a plugin. From the repository root:

    kfuzz run faults.softmax --kernel tail_mask_bf16_store --plugin bench.faults.targets

Python code (the bench scripts, the tests) calls `load()`.
"""

from __future__ import annotations

PLUGIN = "bench.faults.targets"


def load() -> list[str]:
    """Register the `faults.*` targets as the plugin `PLUGIN`, so that each finding of them
    records it and replays where it can be imported. Takes nothing; returns the target names
    (the same on every call). Raises kfuzz.errors.PluginError when the plugin fails to import."""
    from kfuzz.targets.registry import load_plugin

    return load_plugin(PLUGIN)

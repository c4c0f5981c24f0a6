"""Built-in targets, registered lazily, by name.

`MODULES` names, for each module of this package, the targets that importing it registers, so
that every built-in target's name is known without importing torch, and `kfuzz.targets.get`
imports only the module a name needs (`kfuzz.targets.all_targets` imports them all). A module
that registers a target must list it here; tests/test_startup.py checks every list against
what its module registers. Each target is declared with `kfuzz.targets.declare.define` (see
docs/targets.md, "Adding a target"). The seeded-fault `faults.*` targets of the benchmarks are
not built in: they are the plugin `bench.faults.targets`.
"""

from __future__ import annotations

MODULES: dict[str, tuple[str, ...]] = {
    "kfuzz.targets.builtin.ops": ("ops.rmsnorm", "ops.softmax", "ops.rope", "ops.layernorm"),
    "kfuzz.targets.builtin.dsv4": ("dsv4.sparse_attn", "dsv4.q_norm_rope"),
    "kfuzz.targets.builtin.real": ("triton.rmsnorm", "triton.softmax", "triton.sparse_attn",
                                   "ops.sdpa", "ops.sdpa_fa"),
    "kfuzz.targets.builtin.chains": ("dsv4.decode",),
    "kfuzz.targets.builtin.gqa": ("ops.gqa",),
}

# Target name -> the module whose import registers it.
BUILTIN: dict[str, str] = {name: module for module, names in MODULES.items() for name in names}

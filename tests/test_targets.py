"""The registry, plugins and module:function references."""

from __future__ import annotations

import textwrap

import pytest
from kfuzz.errors import BadCallable, PluginError, UnknownTarget, UnknownVariant
from kfuzz.targets import registry

PLUGIN = textwrap.dedent('''
    import torch
    from hypothesis import strategies as st
    from kfuzz.judge.compare import Comparator
    from kfuzz.cases.materialise import values
    from kfuzz.targets.registry import OutputSpec, Target, Variant, register

    def double(x):
        return x * 2

    def double_lowp(x):
        return (x.to(torch.bfloat16) * 2).to(x.dtype)

    register(Target(
        name="{name}",
        doc="doubles a float32 vector",
        signature="fn(x) -> y",
        cases=lambda max_numel: st.fixed_dictionaries(
            {{"n": st.integers(1, 64), "seed": st.integers(0, 2**32 - 1)}}),
        inputs=lambda case, gen: {{"x": values(gen, [case["n"]], torch.float32,
                                               {{"kind": "normal", "scale": 1.0}})}},
        expect=lambda case: {{"y": OutputSpec((case["n"],), torch.float32)}},
        kernels={{"lowp": Variant("lowp", double_lowp), "exact": Variant("exact", double)}},
        oracles={{"ref": Variant("ref", double)}},
        comparators={{"y": Comparator(mode="exact")}},
        default_kernel="lowp",
        default_oracle="ref",
    ))
''')


def test_unknown_target_names_the_known_ones():
    with pytest.raises(UnknownTarget) as info:
        registry.get("ops.nope")
    assert "known: " in str(info.value) and "ops.rmsnorm" in str(info.value)


def test_resolve_variants_and_kernel_as_oracle():
    target = registry.get("ops.rmsnorm")
    assert registry.resolve(target, "kernel", "eager_fp32").name == "eager_fp32"
    # kernel vs kernel: an oracle may name a kernel variant
    assert registry.resolve(target, "oracle", "eager_fp32").name == "eager_fp32"
    with pytest.raises(UnknownVariant):
        registry.resolve(target, "kernel", "fp64")


@pytest.mark.parametrize("ref", ["a:", ":f", "a:b c", "noref"])
def test_malformed_references(ref):
    with pytest.raises(BadCallable) as info:
        registry.import_callable(ref)
    assert str(info.value).startswith(f"malformed --kernel {ref!r}")


def test_import_callable_reaches_attributes_and_refuses_non_callables():
    import os.path

    assert registry.import_callable("os.path:join") is os.path.join
    with pytest.raises(BadCallable, match="is a str, not a callable"):
        registry.import_callable("os:sep")


def test_plugin_file_registers_a_target_that_fuzzes(tmp_path, kfuzz):
    plugin = tmp_path / "myplugin.py"
    plugin.write_text(PLUGIN.format(name="mine.double"))
    listing = kfuzz("targets", "--json", "--plugin", plugin)
    assert "mine.double" in {t["name"] for t in listing.json()["targets"]}
    run = kfuzz("run", "mine.double", "--plugin", plugin, "--max-examples", "50", "--seed", "0",
                "--db", tmp_path / "c.db", "--json")
    assert run.code == 1
    assert run.json()["findings"][0]["kernel"] == "lowp"
    clean = kfuzz("run", "mine.double", "--kernel", "exact", "--plugin", plugin,
                  "--max-examples", "50", "--db", tmp_path / "c.db", "--json")
    assert clean.code == 0


def test_plugin_that_registers_nothing_is_an_error(tmp_path, kfuzz):
    empty = tmp_path / "empty_plugin.py"
    empty.write_text("x = 1\n")
    res = kfuzz("targets", "--plugin", empty)
    assert res.code == 2
    assert "registered no target" in res.err


def test_missing_plugin_file(kfuzz):
    res = kfuzz("targets", "--plugin", "/nonexistent/p.py")
    assert res.code == 2
    assert res.err == "kfuzz: error: plugin file '/nonexistent/p.py' does not exist\n"


def test_target_with_bad_default_is_refused():
    target = registry.get("ops.softmax")
    with pytest.raises(PluginError, match="default kernel 'nope'"):
        registry.Target(**{**target.__dict__, "name": "x", "default_kernel": "nope"})

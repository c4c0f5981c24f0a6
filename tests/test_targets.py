"""The registry, plugins, module:function references, and targets declared from specs
(`kfuzz.targets.declare`), the built-ins included."""

from __future__ import annotations

import inspect
import sys
import textwrap

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kfuzz.cases.materialise import generator_for, integers, stamp, values
from kfuzz.cases.strategies import Dim
from kfuzz.errors import BadCallable, PluginError, UnknownTarget, UnknownVariant
from kfuzz.targets import registry
from kfuzz.targets.builtin import BUILTIN
from kfuzz.targets.declare import define, target, tensor, variant

PLUGIN = textwrap.dedent('''
    import torch
    from hypothesis import strategies as st
    from kfuzz.judge.comparator import Comparator
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


# -- targets declared from specs --------------------------------------------------------------


def _gather(table, idx, *, scale):
    """Rows of the table, scaled."""
    return table[idx] * scale


def _gather_cases(max_numel):
    return st.fixed_dictionaries({"shape": st.tuples(st.integers(1, 8), st.integers(1, 4)).map(list),
                                  "index": st.fixed_dictionaries({"k": st.integers(1, 5)}),
                                  "scale": st.just(2.0), "seed": st.just(0)})


def _gather_inputs(case, gen):
    rows, width = case["shape"]
    return {"table": values(gen, [rows, width], torch.float32, {"kind": "normal", "scale": 1.0},
                            name="table"),
            "idx": integers(gen, (case["index"]["k"],), 0, rows, name="idx")}


def _gather_target(**changes):
    args = {"inputs": {"table": tensor("rows width", dtypes=["float32"], note="a table"),
                       "idx": tensor("picks", dtypes=["int64"])},
            "outputs": {"out": tensor("picks width", dtypes="table")},
            "params": {"scale": "float"}, "shape": {"rows": Dim(1, 8), "width": Dim(1, 4)},
            "sizes": {"picks": "index.k"}, "cases": _gather_cases, "materialise": _gather_inputs,
            "oracles": {"ref": _gather}, "register": False, **changes}
    return define("test.gather", **args)


def test_define_derives_the_signature_docs_size_and_outputs_from_the_specs():
    t = _gather_target()
    assert t.signature == "fn(table, idx, *, scale: float) -> out"
    assert t.inputs_doc == {"table": "[rows, width] float32, a table", "idx": "[picks] int64"}
    assert t.outputs_doc == {"out": "[picks, width] same dtype as table"}
    assert t.doc == "Rows of the table, scaled." and t.default_oracle == "ref"
    assert t.default_kernel == "" and t.dims == (Dim(1, 8), Dim(1, 4))
    case = {"shape": [3, 2], "index": {"k": 5}, "scale": 2.0, "seed": 0}
    assert t.case_size(case) == 3 * 2 + 5
    assert t.expect(case) == {"out": registry.OutputSpec((5, 2), torch.float32)}
    assert t.params(case) == {"scale": 2.0}
    # A shape given as a string: the same layout, no bounds for the shrinker.
    assert _gather_target(shape="rows width").dims is None


def test_define_takes_references_imported_on_first_call(tmp_path, monkeypatch):
    (tmp_path / "lazy_gather.py").write_text(textwrap.dedent("""
        def gather(table, idx, *, scale, offset=0.0):
            return table[idx] * scale + offset
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    t = _gather_target(oracles="lazy_gather:gather",
                       kernels={"shifted": variant("lazy_gather:gather", "plus one", offset=1.0)})
    assert "lazy_gather" not in sys.modules  # declaring imports nothing of it
    assert list(t.oracles) == ["gather"] and t.kernels["shifted"].doc == "plus one"
    table, idx = torch.ones(2, 3), torch.tensor([1, 0])
    assert torch.equal(t.kernels["shifted"](table=table, idx=idx, scale=2.0), torch.full((2, 3), 3.0))
    assert "lazy_gather" in sys.modules
    assert list(inspect.signature(t.oracles["gather"].fn).parameters) == ["table", "idx", "scale",
                                                                          "offset"]


@pytest.mark.parametrize("changes, message", [
    ({"oracles": {"ref": "no_colon"}}, "target 'test.gather': oracle 'ref': 'no_colon' is not a "
                                       "'module:function' reference"),
    ({"outputs": {"out": tensor("picks depth", dtypes="table")}},
     "target 'test.gather': output 'out' uses shape symbol 'depth', which no input has"),
    ({"oracles": {}}, "target 'test.gather': give an oracle"),
], ids=["malformed-reference", "unknown-symbol", "no-oracle"])
def test_define_mistakes_are_one_line_errors(changes, message):
    with pytest.raises(PluginError) as info:
        _gather_target(**changes)
    assert str(info.value).startswith(message), str(info.value)


def test_target_refuses_an_integer_input_it_cannot_draw():
    with pytest.raises(PluginError, match="input 'i' is an integer tensor"):
        target("test.ints", inputs={"i": tensor("n", dtypes=["int64"])}, oracle=_gather,
               register=False)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_a_builtin_target_matches_its_specs(name):
    # Its inputs are those its specs name, its size counts their elements, and its default
    # oracle returns outputs of the shapes its specs expect (in float64, or the output dtype).
    t = registry.get(name)

    @settings(max_examples=4, phases=[Phase.generate], deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(t.cases(4096))
    def check(case):
        case = stamp(case)
        inputs = t.inputs(case, generator_for(case))
        assert list(inputs) == list(t.inputs_doc) and t.signature.startswith(
            f"fn({', '.join(inputs)}")
        assert t.case_size(case) == sum(x.numel() for x in inputs.values())
        out = t.oracles[t.default_oracle](**inputs, **t.params(case))
        out = out if isinstance(out, dict) else dict(zip(t.outputs, [out], strict=True))
        expected = t.expect(case)
        assert {k: tuple(v.shape) for k, v in out.items()} == {
            k: spec.shape for k, spec in expected.items()}
        assert all(out[k].dtype in (torch.float64, spec.dtype) for k, spec in expected.items())

    check()

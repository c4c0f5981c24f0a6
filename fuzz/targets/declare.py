"""Targets declared in a few lines: `kfuzz.target(...)` with `kfuzz.tensor(...)` input specs.

    rms = kfuzz.target(
        "mine.rmsnorm",
        inputs={"x": kfuzz.tensor("rows cols", dtypes=["bfloat16", "float16"]),
                "weight": kfuzz.tensor("cols", dtypes="x")},
        params={"eps": [1e-6, 1e-5]},
        oracle=rmsnorm_fp64,
    )

Shape symbols are shared across inputs ("cols" is one size for x and weight), each tensor's
dtype is drawn from its choices (inputs offering the same choices, or naming another input,
share one draw), its values from the value regimes of `kfuzz.cases.strategies.distributions`.
Outputs default to one output "y" with the first input's shape and dtype; the kernel and
oracle signature, `fn(x, weight, *, eps)`, is derived from the inputs and params. The result
is an ordinary `kfuzz.targets.Target`, registered under its name.

`target` draws the case and builds the inputs from the specs. `define`, which `target` calls
and the built-in targets use, takes a case strategy and an input builder of the target's own
(extra case fields, integer inputs, inputs built from one another) and still derives the
rest from the specs: the signature, the input and output descriptions, the expected outputs,
the case size and the default kernel and oracle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kfuzz.errors import PluginError
from kfuzz.targets.specs import INTEGER_DTYPES, Reference, TensorSpec, as_variants, tensor, variant

if TYPE_CHECKING:
    from kfuzz.targets.registry import Target

__all__ = ["Reference", "TensorSpec", "declared", "define", "mark_declared", "target", "tensor",
           "variant"]

DEFAULT_DIM = (1, 1024)
DEFAULT_MAX_NUMEL = 1 << 18
RESERVED = ("seed", "materialise")
_DECLARED: set[str] = set()


def declared(name: str) -> bool:
    """True when `name` was registered in this process by `target` or by handing a `Target`
    to `kfuzz.fuzz` (from a plugin or not)."""
    return name in _DECLARED


def mark_declared(name: str) -> None:
    """Note that `name` was registered in this process by the Python API."""
    _DECLARED.add(name)


def dtype_fields(name: str, inputs: Mapping[str, TensorSpec]) -> dict[str, str]:
    """Input -> the case field holding its dtype: "dtype" for the first distinct list of
    choices, "<input>_dtype" for each other list; an input naming another input follows it.
    Raises PluginError for a dtype taken from a non-input or a cycle."""
    fields: dict[tuple[str, ...], str] = {}
    for key, spec in inputs.items():
        if isinstance(spec.dtypes, str) and (spec.dtypes not in inputs or spec.dtypes == key):
            raise PluginError(f"target {name!r}: input {key!r} takes its dtype from "
                              f"{spec.dtypes!r}, which is not another input")
        if isinstance(spec.dtypes, tuple) and spec.dtypes not in fields:
            fields[spec.dtypes] = "dtype" if not fields else f"{key}_dtype"
    out = {}
    for key in inputs:
        source, seen = key, {key}
        while isinstance(choice := inputs[source].dtypes, str):
            if choice in seen:
                raise PluginError(f"target {name!r}: inputs {', '.join(sorted(seen))} take "
                                  "their dtypes from each other; give one of them dtypes=[...]")
            source = choice
            seen.add(source)
        out[key] = fields[choice]
    return out


class _Layout:
    """Where a case keeps each shape symbol's size: the "shape" list (`shape`), a field path
    or function (`sizes`), else a top-level field named like the symbol; and each input's
    dtype: its case field (`dtype_fields`), or its only choice when the case has no field.
    Gives a target's expected outputs and case size from its specs."""

    def __init__(self, name: str, inputs: Mapping[str, TensorSpec],
                 outputs: Sequence[str] | Mapping[str, TensorSpec] | None,
                 shape: str | Mapping[str, Any],
                 sizes: Mapping[str, str | Callable[[dict[str, Any]], int]] | None) -> None:
        if not inputs:
            raise PluginError(f"target {name!r}: declare at least one input, e.g. "
                              "inputs={'x': kfuzz.tensor('rows cols')}")
        if not all(isinstance(spec, TensorSpec) for spec in inputs.values()):
            raise PluginError(f"target {name!r}: each input must be a kfuzz.tensor(...) spec")
        self.inputs, self.sizes = dict(inputs), dict(sizes or {})
        self.outputs = _outputs(name, inputs, outputs)
        self.drawn = dict(shape) if isinstance(shape, Mapping) else dict.fromkeys(shape.split())
        self.shape = list(self.drawn)
        self.fields = dtype_fields(name, inputs)
        known = {*self.shape, *self.sizes, *(s for spec in inputs.values() for s in spec.symbols)}
        for key, spec in self.outputs.items():
            bad = [d for d in spec.symbols if d not in known]
            if bad:
                raise PluginError(f"target {name!r}: output {key!r} uses shape symbol "
                                  f"{bad[0]!r}, which no input has")

    def size(self, symbol: str, case: Mapping[str, Any]) -> int:
        """The size of shape symbol `symbol` in `case`."""
        if symbol in self.shape:
            return int(case["shape"][self.shape.index(symbol)])
        how = self.sizes.get(symbol, symbol)
        if callable(how):
            return int(how(dict(case)))
        value: Any = case
        for part in how.split("."):
            value = value[part]
        return int(value)

    def dims(self, dims: Iterable[str | int], case: Mapping[str, Any]) -> list[int]:
        """A spec's shape in `case`."""
        return [d if isinstance(d, int) else self.size(d, case) for d in dims]

    def input_dtype(self, key: str, case: Mapping[str, Any]) -> str:
        """The dtype name of input `key` in `case`."""
        choices = self.inputs[key].dtypes
        while isinstance(choices, str):
            choices = self.inputs[choices].dtypes
        field = self.fields[key]
        return case.get(field, choices[0]) if len(choices) == 1 else case[field]

    def expect(self, case: dict[str, Any]) -> dict[str, Any]:
        """Output -> OutputSpec (shape, dtype) in `case`: `Target.expect`."""
        from kfuzz.cases.materialise import dtype_of
        from kfuzz.targets.registry import OutputSpec

        return {key: OutputSpec(tuple(self.dims(spec.dims, case)), dtype_of(
                    self.input_dtype(spec.dtypes, case) if isinstance(spec.dtypes, str)
                    else spec.dtypes[0]))
                for key, spec in self.outputs.items()}

    def case_size(self, case: dict[str, Any]) -> int:
        """Total input elements of `case`: `Target.size`."""
        return sum(math.prod(self.dims(spec.dims, case)) for spec in self.inputs.values())

    def shrink_dims(self) -> tuple[Any, ...] | None:
        """The shrinker's bounds for the "shape" list (`Target.dims`), when every entry has
        one."""
        drawn = list(self.drawn.values())
        return tuple(drawn) if drawn and all(d is not None for d in drawn) else None


def _outputs(name: str, inputs: Mapping[str, TensorSpec],
             outputs: Sequence[str] | Mapping[str, TensorSpec] | None) -> dict[str, TensorSpec]:
    first = next(iter(inputs))
    if outputs is None:
        outputs = ["y"]
    if not isinstance(outputs, Mapping):
        return {o: TensorSpec(inputs[first].dims, first) for o in outputs}
    for key, spec in outputs.items():
        if not isinstance(spec, TensorSpec):
            raise PluginError(f"target {name!r}: output {key!r} must be a kfuzz.tensor(...) spec")
        if isinstance(spec.dtypes, str) and spec.dtypes not in inputs:
            raise PluginError(f"target {name!r}: output {key!r} takes its dtype from "
                              f"{spec.dtypes!r}, not an input")
        if isinstance(spec.dtypes, tuple) and len(spec.dtypes) != 1:
            raise PluginError(f"target {name!r}: output {key!r} needs one dtype or an input's "
                              f"name, got {spec.dtypes}")
    return dict(outputs)


def _comparators(name: str, comparator: Any, outputs: Iterable[str]) -> dict[str, Any]:
    from kfuzz.judge.comparator import Comparator

    outputs = list(outputs)
    if comparator is None or isinstance(comparator, Comparator):
        return {o: comparator or Comparator() for o in outputs}
    if not isinstance(comparator, Mapping):
        raise PluginError(f"target {name!r}: comparator must be a Comparator or a dict of "
                          f"them, not {type(comparator).__name__}")
    if set(comparator) != set(outputs):
        raise PluginError(f"target {name!r}: comparator keys {sorted(comparator)} do not match "
                          f"the outputs {sorted(outputs)}")
    if not all(isinstance(c, Comparator) for c in comparator.values()):
        raise PluginError(f"target {name!r}: comparator values must be "
                          "kfuzz.judge.compare.Comparator objects")
    return dict(comparator)


def _call(inputs: Iterable[str], params: Mapping[str, str] | Sequence[str]) -> str:
    """"fn(x, weight, *, eps: float)": the inputs, then the params with their types if given."""
    typed = [f"{k}: {params[k]}" if isinstance(params, Mapping) and params[k] else k
             for k in params]
    return f"fn({', '.join(inputs)}{', *, ' + ', '.join(typed) if typed else ''})"


class _CaseFields:
    """case -> {param: the case's field of that name}: the default `Target.params`."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)

    def __call__(self, case: dict[str, Any]) -> dict[str, Any]:
        return {k: case[k] for k in self.names}


def define(
    name: str,
    *,
    inputs: Mapping[str, TensorSpec],
    oracles: Any,
    cases: Callable[[int], Any],
    materialise: Callable[[dict[str, Any], Any], dict[str, Any]],
    outputs: Sequence[str] | Mapping[str, TensorSpec] | None = None,
    kernels: Any = None,
    params: Mapping[str, str] | Sequence[str] = (),
    param_values: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    shape: str | Mapping[str, Any] = "",
    sizes: Mapping[str, str | Callable[[dict[str, Any]], int]] | None = None,
    comparator: Any = None,
    comparator_doc: str = "",
    doc: str = "",
    signature: str = "",
    default_kernel: str = "",
    default_oracle: str = "",
    max_numel: int = DEFAULT_MAX_NUMEL,
    reductions: Callable[[dict[str, Any]], Iterable[tuple[str, dict[str, Any]]]] | None = None,
    features: Callable[..., Mapping[str, float]] | None = None,
    in_all: bool = True,
    examples: Sequence[Mapping[str, Any]] = (),
    register: bool = True,
) -> Target:
    """Declare a target that draws its cases and builds its inputs itself; register it unless
    `register=False`; return its `Target`. `target` and the built-in targets use it.

    inputs: name -> `tensor(...)` in call order (their `values` unused); outputs, comparator,
    doc, max_numel: as for `target`. oracles, kernels: a callable, or name -> callable,
    "module:function" reference or `variant(...)`; the first is the default unless
    default_kernel / default_oracle name another. cases: max_numel -> strategy of case dicts;
    materialise: (case, generator) -> {input: CPU tensor}. params: name -> type ("float", or
    "") or names; param_values: case -> {param: value} (default: the case's fields). shape:
    the symbols of the case's "shape" list in order, "rows cols", or symbol -> `Dim` or int
    (the shrinker's bounds); sizes: symbol -> case path ("index.k") or case -> int for other
    symbols; any other symbol is the case field of its name. An input's dtype is its field
    (`dtype_fields`), or its only choice where the case lacks the field. comparator_doc: why
    that comparator; signature: replaces the derived one; reductions, features, in_all: see
    `kfuzz.targets.Target`; examples: cases every campaign runs first (`example_cases`).
    Raises PluginError with a one-line message."""
    from kfuzz.targets import registry

    layout = _Layout(name, inputs, outputs, shape, sizes)
    comparators = _comparators(name, comparator, layout.outputs)
    oracle_variants = as_variants("oracle", oracles, name)
    kernel_variants = as_variants("kernel", kernels, name)
    if not oracle_variants:
        raise PluginError(f"target {name!r}: give an oracle (a callable, or a dict of them)")
    built = registry.Target(
        name=name,
        doc=doc or next(iter(oracle_variants.values())).doc or name,
        signature=signature or f"{_call(inputs, params)} -> {', '.join(layout.outputs)}",
        cases=cases,
        inputs=materialise,
        params=param_values or _CaseFields(params),
        expect=layout.expect,
        kernels=kernel_variants,
        oracles=oracle_variants,
        comparators=comparators,
        default_kernel=default_kernel or next(iter(kernel_variants), ""),
        default_oracle=default_oracle or next(iter(oracle_variants)),
        inputs_doc={k: spec.describe() for k, spec in inputs.items()},
        outputs_doc={k: spec.describe() for k, spec in layout.outputs.items()},
        comparator_doc=comparator_doc,
        max_numel=max_numel,
        size=layout.case_size,
        dims=layout.shrink_dims(),
        reductions=reductions,
        features=features,
        in_all=in_all,
        examples=example_cases(name, examples),
        specials={k: spec.specials for k, spec in inputs.items() if spec.specials},
    )
    if register:
        registry.register(built)
    return built


def example_cases(name: str, examples: Any) -> tuple[dict[str, Any], ...]:
    """`examples` checked: case dicts of JSON values (a target's seed inputs, run first in
    every campaign, as Hypothesis' `@example`). Raises PluginError naming the bad one."""
    import json

    if isinstance(examples, Mapping) or not isinstance(examples, (list, tuple)):
        raise PluginError(f"target {name!r}: examples must be a list of case dicts, e.g. "
                          "examples=[{'shape': [4, 4096], ...}]")
    out = []
    for i, case in enumerate(examples):
        if not isinstance(case, Mapping):
            raise PluginError(f"target {name!r}: examples[{i}] is a {type(case).__name__}, "
                              "not a case dict")
        try:
            out.append(json.loads(json.dumps(dict(case), allow_nan=False)))
        except (TypeError, ValueError) as exc:
            raise PluginError(f"target {name!r}: examples[{i}] is not plain JSON data "
                              f"({exc}); use lists, numbers and strings") from None
    return tuple(out)


def _param_strategy(name: str, key: str, value: Any) -> Any:
    from hypothesis import strategies as st

    if isinstance(value, st.SearchStrategy):
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            raise PluginError(f"target {name!r}: param {key!r} offers no values")
        return st.sampled_from(tuple(value))
    return st.just(value)


def _symbols(name: str, inputs: Mapping[str, TensorSpec], params: Mapping[str, Any],
             dims: Mapping[str, tuple[int, int]] | None, max_numel: int) -> tuple[list[str], list[Any]]:
    """The shape symbols of `target`'s inputs and their `Dim`s, checked: no name used twice or
    reserved, no integer input, dims naming only symbols. Raises PluginError."""
    from kfuzz.cases import strategies as fst

    def fail(problem: str) -> PluginError:
        return PluginError(f"target {name!r}: {problem}")

    if not all(isinstance(spec, TensorSpec) for spec in inputs.values()):
        raise fail("each input must be a kfuzz.tensor(...) spec")
    symbols = list(dict.fromkeys(s for spec in inputs.values() for s in spec.symbols))
    everything = [*inputs, *params, *symbols]
    taken = [n for n in everything if everything.count(n) > 1]
    if taken:
        raise fail(f"{taken[0]!r} names more than one input, param or shape symbol")
    for key in everything:
        if key in RESERVED or key.endswith("_dtype") or key == "dtype":
            raise fail(f"{key!r} is reserved for the case; rename it")
    integer = [k for k, spec in inputs.items()
               if isinstance(spec.dtypes, tuple) and set(spec.dtypes) & set(INTEGER_DTYPES)]
    if integer:
        raise fail(f"input {integer[0]!r} is an integer tensor, which kfuzz.target does not "
                   "draw; declare the target with kfuzz.targets.declare.define")
    dtype_fields(name, inputs)
    unknown = sorted(set(dims or {}) - set(symbols))
    if unknown:
        raise fail(f"dims names {unknown[0]!r}, which no input's shape uses "
                   f"(symbols: {', '.join(symbols) or 'none'})")
    try:
        dim_specs = [fst.Dim(*(dims or {}).get(s, DEFAULT_DIM)) for s in symbols]
        fst.shapes(*dim_specs, max_numel=max_numel)
    except (TypeError, ValueError) as exc:
        raise fail(f"dims: {exc}") from None
    return symbols, dim_specs


class _Drawn:
    """The case strategy and input builder of a `target`: each symbol's size, each dtype draw,
    each input's value distribution, each param and the seed, as top-level case fields."""

    def __init__(self, name: str, inputs: Mapping[str, TensorSpec], params: Mapping[str, Any],
                 symbols: list[str], dim_specs: list[Any]) -> None:
        self.inputs, self.symbols, self.dim_specs = dict(inputs), symbols, dim_specs
        self.fields = dtype_fields(name, inputs)
        self.choices = {self.fields[k]: spec.dtypes for k, spec in inputs.items()
                        if isinstance(spec.dtypes, tuple)}
        self.name, self.given = name, dict(params)
        self.params = {k: _param_strategy(name, k, v) for k, v in params.items()}

    def complete(self, example: dict[str, Any]) -> dict[str, Any]:
        """A seed case from `example`: every shape symbol's size as given; dtypes, values,
        params and the seed as given or their defaults. Raises PluginError."""
        where = f"target {self.name!r}: example {example}"
        missing = [s for s in self.symbols if s not in example]
        if missing:
            raise PluginError(f"{where} gives no size for {missing[0]!r}; name every shape "
                              f"symbol ({', '.join(self.symbols)})")
        case: dict[str, Any] = {f: options[0] for f, options in self.choices.items()}
        case.update(dict.fromkeys(self.inputs, {"kind": "normal", "scale": 1.0}))
        for key, value in self.given.items():
            if isinstance(value, (list, tuple)):
                case[key] = value[0]
            elif key not in example and hasattr(value, "example"):  # a strategy
                raise PluginError(f"{where} gives no value for param {key!r}, which is drawn")
            else:
                case[key] = value
        case["seed"] = 0
        unknown = sorted(set(example) - set(case) - set(self.symbols))
        if unknown:
            raise PluginError(f"{where} names {unknown[0]!r}, which is not a shape symbol, "
                              f"input, param, dtype field or 'seed'")
        return {**case, **example}

    def cases(self, limit: int) -> Any:
        """max_numel -> strategy of case dicts: `Target.cases`."""
        from hypothesis import strategies as st
        from kfuzz.cases import strategies as fst

        fixed = {f: fst.dtypes(options) for f, options in self.choices.items()}
        fixed.update({k: spec.values for k, spec in self.inputs.items()})
        fixed.update(self.params)
        fixed["seed"] = fst.seeds()
        sizes = fst.shapes(*self.dim_specs, max_numel=limit) if self.dim_specs else st.just([])
        symbols = self.symbols
        return st.tuples(sizes, fst.case_dicts(fixed)).map(
            lambda pair: {**dict(zip(symbols, pair[0], strict=True)), **pair[1]})

    def materialise(self, case: dict[str, Any], gen: Any) -> dict[str, Any]:
        """(case, generator) -> {input: tensor}: `Target.inputs`."""
        from kfuzz.cases.materialise import dtype_of, values

        return {k: values(gen, [d if isinstance(d, int) else int(case[d]) for d in spec.dims],
                          dtype_of(case[self.fields[k]]), case[k], name=k)
                for k, spec in self.inputs.items()}


def target(
    name: str,
    *,
    inputs: Mapping[str, TensorSpec],
    oracle: Any,
    outputs: Sequence[str] | Mapping[str, TensorSpec] | None = None,
    params: Mapping[str, Any] | None = None,
    kernels: Any = None,
    comparator: Any = None,
    dims: Mapping[str, tuple[int, int]] | None = None,
    max_numel: int = DEFAULT_MAX_NUMEL,
    doc: str = "",
    examples: Sequence[Mapping[str, Any]] = (),
    register: bool = True,
) -> Target:
    """Declare (and register, unless `register=False`) a target; returns its `Target`.

    inputs: name -> `tensor(...)`, in call order. oracle, kernels: a callable or name ->
    callable, "module:function" reference or `variant(...)` (the first is the default);
    without kernels the target fuzzes only kernels passed to `kfuzz.fuzz` or `--kernel`.
    outputs: output names (each like the first input) or name -> `tensor(...)` with a single
    dtype or an input's name; default one output "y". params: name -> a value, a list to draw
    from, or a strategy; passed as keyword arguments. comparator: a `Comparator` for every
    output, a dict output -> Comparator, or None (allclose with torch.testing's tolerances per
    dtype). dims: symbol -> (min, max) size (default 1..1024). max_numel: most elements in
    one drawn tensor. A case holds each symbol's size, each dtype draw ("dtype", then
    "<input>_dtype"), each input's value distribution, each param and the seed. examples:
    cases every campaign runs first, each naming every shape symbol's size and optionally
    anything else (dtypes default to the first choice, values to N(0, 1), params to their
    first value, the seed to 0), e.g. [{"rows": 4, "cols": 4096}].
    Raises PluginError with a one-line message for anything inconsistent."""
    if not inputs:
        raise PluginError(f"target {name!r}: declare at least one input, e.g. "
                          "inputs={'x': kfuzz.tensor('rows cols')}")
    params = dict(params or {})
    symbols, dim_specs = _symbols(name, inputs, params, dims, max_numel)
    drawn = _Drawn(name, inputs, params, symbols, dim_specs)
    built = define(name, inputs=inputs, oracles=oracle, cases=drawn.cases,
                   materialise=drawn.materialise, outputs=outputs, kernels=kernels,
                   params=list(params), comparator=comparator, doc=doc, max_numel=max_numel,
                   examples=[drawn.complete(e) for e in example_cases(name, examples)],
                   register=False)
    if register:
        # Declaring a name again (a notebook cell run twice) replaces the earlier declaration;
        # taking a built-in's or a plugin's name is an error.
        from kfuzz.targets import registry

        registry.register(built, replace=declared(name))
        mark_declared(name)
    return built

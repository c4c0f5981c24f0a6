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
is an ordinary `kfuzz.targets.Target`, registered under its name; the full `Target` stays for
targets that need a strategy of their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kfuzz.errors import PluginError

DEFAULT_DTYPES = ("float32", "bfloat16", "float16")
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


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a declared target. dims: shape symbols (str) and fixed sizes
    (int); dtypes: dtype names to draw from, or the name of another input whose dtype it
    shares; values: a strategy of distribution descriptions (None for outputs)."""

    dims: tuple[str | int, ...]
    dtypes: tuple[str, ...] | str
    values: Any = None

    def describe(self) -> str:
        """E.g. "[rows, cols] bfloat16|float16"."""
        dtype = (f"same dtype as {self.dtypes}" if isinstance(self.dtypes, str)
                 else "|".join(self.dtypes))
        return f"[{', '.join(map(str, self.dims))}] {dtype}"


def tensor(shape: str, *, dtypes: Sequence[str] | str | None = None, values: Any = None) -> TensorSpec:
    """A tensor spec for `target`. shape: space-separated symbols or sizes ("rows cols",
    "heads 64"; "" for a scalar tensor); dtypes: dtype names, friendliest first (default
    float32, bfloat16, float16), or another input's name to share its dtype; values: None (all
    value regimes), a list of distribution kinds ("normal", "edge", ...), one distribution
    dict, or a Hypothesis strategy of them. Raises PluginError for a bad spec."""
    from hypothesis import strategies as st
    from kfuzz.cases import strategies as fst

    dims: list[str | int] = []
    for token in shape.split():
        if token.isdigit():
            dims.append(int(token))
        elif token.isidentifier():
            dims.append(token)
        else:
            raise PluginError(f"tensor({shape!r}): {token!r} is neither a size nor a symbol; "
                              "write e.g. tensor(\"rows cols\") or tensor(\"heads 64\")")
    if isinstance(dtypes, str):
        if dtypes in fst.DTYPES:
            raise PluginError(f"tensor({shape!r}, dtypes={dtypes!r}): pass a list, "
                              f"dtypes=[{dtypes!r}] (a bare name means another input's dtype)")
        choice: tuple[str, ...] | str = dtypes
    else:
        choice = tuple(dtypes or DEFAULT_DTYPES)
        bad = [d for d in choice if d not in fst.DTYPES]
        if not choice or bad:
            raise PluginError(f"tensor({shape!r}): unknown dtype {bad[0] if bad else None!r}; "
                              f"choose from {', '.join(fst.DTYPES)}")
    if values is None:
        strategy = fst.distributions()
    elif isinstance(values, st.SearchStrategy):
        strategy = values
    elif isinstance(values, Mapping):
        strategy = st.just(dict(values))
    else:
        try:
            strategy = fst.distributions(kinds=tuple(values))
        except (TypeError, ValueError) as exc:
            raise PluginError(f"tensor({shape!r}, values={values!r}): {exc}") from None
    return TensorSpec(tuple(dims), choice, strategy)


def _as_variants(role: str, fns: Callable[..., Any] | Mapping[str, Callable[..., Any]] | None,
                 name: str) -> dict[str, Any]:
    from kfuzz.targets.registry import Variant

    if fns is None:
        return {}
    if callable(fns) and not isinstance(fns, Mapping):
        fns = {getattr(fns, "__name__", role): fns}
    out = {}
    for key, fn in fns.items():
        if not callable(fn):
            raise PluginError(f"target {name!r}: {role} {key!r} is a {type(fn).__name__}, "
                              "not a callable")
        out[key] = Variant(key, fn, (getattr(fn, "__doc__", None) or "").strip().split("\n")[0])
    return out


def _param_strategy(name: str, key: str, value: Any) -> Any:
    from hypothesis import strategies as st

    if isinstance(value, st.SearchStrategy):
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            raise PluginError(f"target {name!r}: param {key!r} offers no values")
        return st.sampled_from(tuple(value))
    return st.just(value)


def target(
    name: str,
    *,
    inputs: Mapping[str, TensorSpec],
    oracle: Callable[..., Any] | Mapping[str, Callable[..., Any]],
    outputs: Sequence[str] | Mapping[str, TensorSpec] | None = None,
    params: Mapping[str, Any] | None = None,
    kernels: Callable[..., Any] | Mapping[str, Callable[..., Any]] | None = None,
    comparator: Any = None,
    dims: Mapping[str, tuple[int, int]] | None = None,
    max_numel: int = DEFAULT_MAX_NUMEL,
    doc: str = "",
    register: bool = True,
) -> Any:
    """Declare (and register, unless `register=False`) a target; returns its `Target`.

    inputs: name -> `tensor(...)`, in call order. oracle, kernels: a callable or name ->
    callable (the first is the default); without kernels the target fuzzes only kernels passed
    to `kfuzz.fuzz` or `--kernel`. outputs: output names (each like the first input) or name ->
    `tensor(...)` with a single dtype or an input's name; default one output "y". params: name
    -> a value, a list to draw from, or a strategy; passed as keyword arguments. comparator: a
    `Comparator` for every output, a dict output -> Comparator, or None (allclose with
    torch.testing's tolerances per dtype). dims: symbol -> (min, max) size (default
    1..1024). max_numel: most elements in one drawn tensor.
    Raises PluginError with a one-line message for anything inconsistent."""
    from hypothesis import strategies as st
    from kfuzz.cases import strategies as fst
    from kfuzz.judge.compare import Comparator
    from kfuzz.targets import registry

    def fail(problem: str) -> PluginError:
        return PluginError(f"target {name!r}: {problem}")

    if not inputs:
        raise fail("declare at least one input, e.g. inputs={'x': kfuzz.tensor('rows cols')}")
    if not all(isinstance(spec, TensorSpec) for spec in inputs.values()):
        raise fail("each input must be a kfuzz.tensor(...) spec")
    names = list(inputs)
    params = dict(params or {})
    symbols = [d for spec in inputs.values() for d in spec.dims if isinstance(d, str)]
    symbols = list(dict.fromkeys(symbols))
    taken = [n for n in [*names, *params, *symbols] if [*names, *params, *symbols].count(n) > 1]
    if taken:
        raise fail(f"{taken[0]!r} names more than one input, param or shape symbol")
    for key in [*names, *params, *symbols]:
        if key in RESERVED or key.endswith("_dtype") or key == "dtype":
            raise fail(f"{key!r} is reserved for the case; rename it")
    for key, spec in inputs.items():
        if isinstance(spec.dtypes, str) and (spec.dtypes not in inputs or spec.dtypes == key):
            raise fail(f"input {key!r} takes its dtype from {spec.dtypes!r}, which is not "
                       "another input")
    unknown = sorted(set(dims or {}) - set(symbols))
    if unknown:
        raise fail(f"dims names {unknown[0]!r}, which no input's shape uses "
                   f"(symbols: {', '.join(symbols) or 'none'})")

    # One dtype draw per distinct choice list; inputs naming another input follow it.
    dtype_fields: dict[tuple[str, ...], str] = {}
    field_of: dict[str, str] = {}
    for key, spec in inputs.items():
        if isinstance(spec.dtypes, tuple) and spec.dtypes not in dtype_fields:
            dtype_fields[spec.dtypes] = "dtype" if not dtype_fields else f"{key}_dtype"
    for key in inputs:
        source, seen = key, {key}
        while isinstance(choice := inputs[source].dtypes, str):
            if choice in seen:
                raise fail(f"inputs {', '.join(sorted(seen))} take their dtypes from each "
                           "other; give one of them dtypes=[...]")
            source = choice
            seen.add(source)
        field_of[key] = dtype_fields[choice]

    first = names[0]
    if outputs is None:
        outputs = ["y"]
    if not isinstance(outputs, Mapping):
        outputs = {o: TensorSpec(inputs[first].dims, first) for o in outputs}
    # output -> (dims, ("input", name) or ("fixed", dtype name))
    out_specs: dict[str, tuple[tuple[str | int, ...], tuple[str, str]]] = {}
    for key, spec in outputs.items():
        if not isinstance(spec, TensorSpec):
            raise fail(f"output {key!r} must be a kfuzz.tensor(...) spec")
        bad = [d for d in spec.dims if isinstance(d, str) and d not in symbols]
        if bad:
            raise fail(f"output {key!r} uses shape symbol {bad[0]!r}, which no input has")
        if isinstance(spec.dtypes, str):
            if spec.dtypes not in inputs:
                raise fail(f"output {key!r} takes its dtype from {spec.dtypes!r}, not an input")
            out_specs[key] = (spec.dims, ("input", spec.dtypes))
        elif len(spec.dtypes) != 1:
            raise fail(f"output {key!r} needs one dtype or an input's name, got {spec.dtypes}")
        else:
            out_specs[key] = (spec.dims, ("fixed", spec.dtypes[0]))

    if comparator is None or isinstance(comparator, Comparator):
        comparators = {o: comparator or Comparator() for o in out_specs}
    elif isinstance(comparator, Mapping):
        comparators = dict(comparator)
        if set(comparators) != set(out_specs):
            raise fail(f"comparator keys {sorted(comparators)} do not match the outputs "
                       f"{sorted(out_specs)}")
        if not all(isinstance(c, Comparator) for c in comparators.values()):
            raise fail("comparator values must be kfuzz.judge.compare.Comparator objects")
    else:
        raise fail(f"comparator must be a Comparator or a dict of them, not "
                   f"{type(comparator).__name__}")

    oracles = _as_variants("oracle", oracle, name)
    kernel_variants = _as_variants("kernel", kernels, name)
    if not oracles:
        raise fail("give an oracle (a callable, or a dict of them)")

    bounds = {s: (dims or {}).get(s, DEFAULT_DIM) for s in symbols}
    try:
        dim_specs = [fst.Dim(*bounds[s]) for s in symbols]
        fst.shapes(*dim_specs, max_numel=max_numel)
    except (TypeError, ValueError) as exc:
        raise fail(f"dims: {exc}") from None

    def cases(limit: int) -> Any:
        fixed = {f: fst.dtypes(choices) for choices, f in dtype_fields.items()}
        fixed.update({k: spec.values for k, spec in inputs.items()})
        fixed.update({k: _param_strategy(name, k, v) for k, v in params.items()})
        fixed["seed"] = fst.seeds()
        sizes = fst.shapes(*dim_specs, max_numel=limit) if dim_specs else st.just([])
        return st.tuples(sizes, st.fixed_dictionaries(fixed)).map(
            lambda pair: {**dict(zip(symbols, pair[0], strict=True)), **pair[1]})

    def shape(dims_: Sequence[str | int], case: Mapping[str, Any]) -> list[int]:
        return [d if isinstance(d, int) else int(case[d]) for d in dims_]

    def make_inputs(case: dict[str, Any], gen: Any) -> dict[str, Any]:
        from kfuzz.cases.materialise import dtype_of, values

        return {k: values(gen, shape(spec.dims, case), dtype_of(case[field_of[k]]), case[k],
                          name=k)
                for k, spec in inputs.items()}

    def expect(case: dict[str, Any]) -> dict[str, Any]:
        from kfuzz.cases.materialise import dtype_of
        from kfuzz.targets.registry import OutputSpec

        out = {}
        for key, (dims_, (how, what)) in out_specs.items():
            dtype = case[field_of[what]] if how == "input" else what
            out[key] = OutputSpec(tuple(shape(dims_, case)), dtype_of(dtype))
        return out

    def size(case: dict[str, Any]) -> int:
        return sum(math.prod(shape(spec.dims, case)) for spec in inputs.values())

    call = f"fn({', '.join(names)}{', *, ' + ', '.join(params) if params else ''})"
    built = registry.Target(
        name=name,
        doc=doc or (getattr(next(iter(oracles.values())).fn, "__doc__", None) or name).strip()
        .split("\n")[0],
        signature=f"{call} -> {', '.join(out_specs)}",
        cases=cases,
        inputs=make_inputs,
        params=lambda case: {k: case[k] for k in params},
        expect=expect,
        kernels=kernel_variants,
        oracles=oracles,
        comparators=comparators,
        default_kernel=next(iter(kernel_variants), ""),
        default_oracle=next(iter(oracles)),
        inputs_doc={k: spec.describe() for k, spec in inputs.items()},
        outputs_doc={k: TensorSpec(d, what if how == "input" else (what,)).describe()
                     for k, (d, (how, what)) in out_specs.items()},
        max_numel=max_numel,
        size=size,
    )
    if register:
        # Declaring a name again (a notebook cell run twice) replaces the earlier declaration;
        # taking a built-in's or a plugin's name is an error.
        registry.register(built, replace=declared(name))
        mark_declared(name)
    return built

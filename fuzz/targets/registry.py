"""The Target contract and its registry.

A target is a name, a case strategy, a function that turns a case into named CPU input tensors,
named kernel variants (implementations under test), named oracles (references), and a default
comparator per output. Kernels and oracles of a target share one call signature,
`fn(**inputs, **params) -> Tensor | dict[str, Tensor]`, which the target documents.

Users add targets from their own module (`--plugin FILE_OR_MODULE`, or a `kfuzz.targets`
entry point) and point a target at their own callable with `--kernel module:function`.

Built-in targets are registered on first use: `get(name)` imports only the module of
`kfuzz.targets.builtin` that registers `name`, `names()` lists every name without importing any, and
`all_targets()` imports them all. This module imports neither torch nor Hypothesis.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfuzz.errors import BadCallable, PluginError, UnknownTarget, UnknownVariant
from kfuzz.targets.builtin import BUILTIN, MODULES

if TYPE_CHECKING:
    import torch
    from hypothesis import strategies as st
    from kfuzz.cases.strategies import Dim
    from kfuzz.judge.comparator import Comparator

ENTRY_POINT_GROUP = "kfuzz.targets"
DEFAULT_MAX_NUMEL = 1 << 20


@dataclass(frozen=True)
class Variant:
    """One kernel or oracle of a target: a callable with the target's signature, plus fixed
    keyword arguments (e.g. a tile size) bound at call time.

    arrays: what the callable takes and returns, "torch" (tensors), "numpy" or "jax" (arrays;
    BF16 as `ml_dtypes.bfloat16`); kfuzz converts at the call, once each way
    (`kfuzz.targets.arrays`). dtypes: the dtype names it implements (None: every one the
    target offers); a run draws only cases whose "dtype" field is one of them and says which
    it left out. library: the kfuzz extra a third-party library kernel needs ("onnxruntime",
    "jax"; `kfuzz.targets.libraries`), None for any other; `run --all` fuzzes each such
    kernel as an entry of its own."""

    name: str
    fn: Callable[..., Any]
    doc: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    arrays: str = "torch"
    dtypes: tuple[str, ...] | None = None
    library: str | None = None

    def __call__(self, **kwargs: Any) -> Any:
        if self.arrays == "torch":
            return self.fn(**kwargs, **self.params)
        from kfuzz.targets.arrays import call

        return call(self.fn, self.arrays, kwargs, self.params)


@dataclass(frozen=True)
class OutputSpec:
    """What a kernel must return for one output: shape and dtype, derived from the case."""

    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass(frozen=True)
class Target:
    """A fuzz target. See the module docstring for the contract.

    cases(max_numel) -> strategy of case dicts, each bounded to max_numel elements per tensor
    inputs(case, generator) -> {name: CPU tensor}, drawn from the generator in a fixed order
    params(case) -> {name: scalar} passed to kernels and oracles as keyword arguments
    expect(case) -> {output name: OutputSpec} the kernel's outputs must match
    """

    name: str
    doc: str
    signature: str
    cases: Callable[[int], st.SearchStrategy[dict[str, Any]]]
    inputs: Callable[[dict[str, Any], torch.Generator], dict[str, torch.Tensor]]
    expect: Callable[[dict[str, Any]], dict[str, OutputSpec]]
    kernels: Mapping[str, Variant]
    oracles: Mapping[str, Variant]
    comparators: Mapping[str, Comparator]
    default_kernel: str
    default_oracle: str
    params: Callable[[dict[str, Any]], dict[str, Any]] = lambda case: {}
    inputs_doc: Mapping[str, str] = field(default_factory=dict)
    outputs_doc: Mapping[str, str] = field(default_factory=dict)
    comparator_doc: str = ""
    max_numel: int = DEFAULT_MAX_NUMEL
    size: Callable[[dict[str, Any]], int] | None = None
    # The drawn dimensions of the case's "shape" field (ints for fixed sizes), so that the
    # size-directed shrinker stays inside the case space; None: any size >= 1.
    dims: tuple[int | Dim, ...] | None = None
    # Extra candidate reductions of a case for the size-directed shrinker: case -> iterable of
    # (label, smaller case), e.g. fewer cache rows (kfuzz.shrink).
    reductions: Callable[[dict[str, Any]], Iterable[tuple[str, dict[str, Any]]]] | None = None
    # What the search may climb beside the errors: (inputs, kernel outputs, oracle outputs)
    # -> {name: number}, e.g. how many intermediate values sit on a rounding tie.
    features: Callable[..., Mapping[str, float]] | None = None
    # False for targets that exist to measure kfuzz itself (seeded faults): `run --all`
    # skips them; naming them still works.
    in_all: bool = True
    # Cases every campaign runs first, before any drawn case (a fuzzer's seed inputs, such as
    # the production shape with production values); a failing one is shrunk like any other.
    examples: tuple[Mapping[str, Any], ...] = ()
    # Input -> the special values its contract allows (`kfuzz.cases.strategies.SPECIALS`),
    # which its drawn values reach; inputs allowing none are left out.
    specials: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # A chain's attribution of a shrunk failure to its stages (`kfuzz.chain`): the failing
    # case's `Job` -> JSON-able data, or None; None for other targets.
    attribute: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        for role, names, default in (
            ("kernel", self.kernels, self.default_kernel),
            ("oracle", self.oracles, self.default_oracle),
        ):
            if role == "kernel" and not names and not default:
                continue  # a target for users' own kernels only (`kfuzz.target`)
            if default not in names:
                raise PluginError(
                    f"target {self.name!r}: default {role} {default!r} is not among its "
                    f"{role}s ({', '.join(names)})"
                )

    @property
    def outputs(self) -> list[str]:
        """Output names, in the order a tuple-returning kernel gives them."""
        return list(self.comparators)

    def case_size(self, case: dict[str, Any]) -> int:
        """Total input elements of `case` (the measure of a shrunk case's size)."""
        if self.size is not None:
            return self.size(case)
        from kfuzz.cases.materialise import generator_for

        return sum(t.numel() for t in self.inputs(case, generator_for(case)).values())

    def describe(self) -> dict[str, Any]:
        """A JSON-able description: kernels, oracles, signature, inputs, outputs, comparators."""
        return {
            "name": self.name,
            "doc": self.doc,
            "signature": self.signature,
            "inputs": dict(self.inputs_doc),
            "outputs": dict(self.outputs_doc) or {o: "" for o in self.outputs},
            "kernels": {n: v.doc for n, v in self.kernels.items()},
            "oracles": {n: v.doc for n, v in self.oracles.items()},
            "default_kernel": self.default_kernel,
            "default_oracle": self.default_oracle,
            "default_comparator": {o: c.to_dict() for o, c in self.comparators.items()},
            "comparator_doc": self.comparator_doc,
            "max_numel": self.max_numel,
            "in_all": self.in_all,
            "examples": [dict(case) for case in self.examples],
            "specials": {k: list(v) for k, v in self.specials.items()},
        }


_REGISTRY: dict[str, Target] = {}
_ENTRY_POINTS_LOADED = False
_PLUGINS: dict[str, list[str]] = {}


def register(target: Target, *, replace: bool = False) -> Target:
    """Add `target` to the registry and return it. Raises PluginError on a duplicate name
    unless `replace`."""
    if not isinstance(target, Target):
        raise PluginError(f"register() takes a kfuzz.targets.Target, got {type(target).__name__}")
    module = BUILTIN.get(target.name)
    if module is not None and module not in sys.modules:
        # A built-in's name: the built-in is registered first, so that a clash (or a
        # replacement) is the same whether or not it had been used yet.
        importlib.import_module(module)
    if target.name in _REGISTRY and not replace and _REGISTRY[target.name] is not target:
        raise PluginError(f"target {target.name!r} is registered twice; rename one of them")
    _REGISTRY[target.name] = target
    return target


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib import metadata  # tens of ms: only where entry points are read

    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party plugin must not hide the others
            raise PluginError(
                f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP} failed to "
                f"load: {type(exc).__name__}: {exc}"
            ) from None
        if callable(obj) and not isinstance(obj, Target):
            obj = obj()
        for target in _as_targets(obj):
            register(target)


def _load_all() -> None:
    """Register every built-in target, then the entry points' targets."""
    for module in MODULES:
        importlib.import_module(module)
    _load_entry_points()


def _as_targets(obj: Any) -> list[Target]:
    if obj is None:
        return []
    if isinstance(obj, Target):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _as_targets(item)]
    return []


def all_targets() -> dict[str, Target]:
    """Every registered target by name (built-ins, entry points, loaded plugins); imports every
    built-in target's kernels."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def names() -> list[str]:
    """Every target's name, sorted: the built-ins' from `kfuzz.targets.builtin.MODULES` (none of them
    imported), those of entry points (loaded) and of targets registered in this process."""
    _load_entry_points()
    return sorted(set(BUILTIN) | set(_REGISTRY))


def get(name: str) -> Target:
    """The target called `name`, importing the built-in module that registers it if it is one.
    Raises UnknownTarget."""
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _REGISTRY:
        _load_all()  # an entry point's target, or a built-in missing from the manifest
    if name not in _REGISTRY:
        raise UnknownTarget(name, names())
    return _REGISTRY[name]


def load_plugin(spec: str) -> list[str]:
    """Import a plugin, a Python file path or an importable module name, whose import
    registers targets (via `register`) or which defines `TARGETS` (a list of Targets).
    Returns the names of the targets it added. Raises PluginError."""
    _load_entry_points()
    from kfuzz.targets.references import normal_plugin

    # `a.py`, `./a.py` and its absolute path are one plugin, loaded once.
    key = normal_plugin(spec)
    if key in _PLUGINS:
        return _PLUGINS[key]
    before = set(_REGISTRY)
    module = _import_plugin(spec)
    for target in _as_targets(getattr(module, "TARGETS", None)):
        register(target)
    # Built-ins it made register (by using one) are not its own.
    added = sorted(set(_REGISTRY) - before - set(BUILTIN))
    if not added and not _as_targets(getattr(module, "TARGETS", None)):
        raise PluginError(
            f"plugin {spec!r} registered no target; call kfuzz.targets.register(Target(...)) "
            "in it or define TARGETS = [...]"
        )
    _PLUGINS[key] = added
    return added


def plugins_for(target: str) -> list[str]:
    """The loaded plugins (in their stored form, see `kfuzz.targets.references.normal_plugin`) that
    registered `target`: what a stored finding of it must load to be replayed elsewhere."""
    return [spec for spec, names in _PLUGINS.items() if target in names]


def loaded_plugins() -> list[str]:
    """Every plugin loaded in this process, in its stored form, in load order."""
    return list(_PLUGINS)


# The plugins a user gave in this process (`load_plugins`), in their stored form: each stands in
# for a recorded plugin of the same file name or module name (`stand_in`).
_GIVEN: list[str] = []


def load_plugins(specs: Iterable[str]) -> None:
    """Load the plugins a user gave (`--plugin`, pytest's `--kfuzz-plugin`). Each one also
    stands in for a plugin a stored finding recorded under the same file name or module name
    (see `stand_in`), so that a corpus made under another checkout path replays here. Raises
    PluginError."""
    from kfuzz.targets.references import normal_plugin

    for spec in specs:
        load_plugin(spec)
        key = normal_plugin(spec)
        if key not in _GIVEN:
            _GIVEN.append(key)


def given_plugins() -> list[str]:
    """The plugins `load_plugins` loaded in this process, in their stored form (for a worker
    process, which must know them as stand-ins too)."""
    return list(_GIVEN)


def _plugin_stem(spec: str) -> str:
    """A plugin's bare name: a file's name without .py, a module's last dotted part."""
    return Path(spec).stem if spec.endswith(".py") else spec.rpartition(".")[2]


def stand_in(recorded: str, given: Iterable[str] | None = None) -> str:
    """The plugin to load for `recorded`, a plugin a stored finding recorded (in its stored
    form): the given plugin of the same file name, or of the same module name (a file
    `x/name.py` and a module `pkg.name` share a name), else `recorded` itself. Two module
    names share a name only when equal. `given`: plugin specs as typed (default: those
    `load_plugins` loaded here). Imports nothing. Raises PluginError when two given plugins
    stand in for one recorded plugin."""
    from kfuzz.targets.references import normal_plugin

    pool = list(_GIVEN) if given is None else list(dict.fromkeys(normal_plugin(g) for g in given))
    if recorded in pool:
        return recorded
    stem = _plugin_stem(recorded)
    matches = [g for g in pool if (g.endswith(".py") or recorded.endswith(".py"))
               and _plugin_stem(g) == stem]
    if len(matches) > 1:
        raise PluginError(
            f"plugins {' and '.join(map(repr, matches))} both stand in for the recorded plugin "
            f"{recorded!r}; pass only one of them"
        )
    return matches[0] if matches else recorded


def load_recorded_plugins(recorded: Iterable[str]) -> None:
    """Load the plugins a stored finding recorded, each through its stand-in (`stand_in`):
    what replay, report, the pytest plugin and exported scripts call. Raises PluginError; for a
    recorded file that does not exist here, or a recorded module that cannot be found, one that
    names it and the fix (--plugin with its new path)."""
    for spec in recorded:
        use = stand_in(spec)
        if use == spec and use not in _PLUGINS:
            _check_recorded(spec)
        load_plugin(use)


def _check_recorded(spec: str) -> None:
    """Raise PluginError naming the fix when the recorded plugin `spec` cannot be found here."""
    fix = (f"pass --plugin NEW/PATH/{_plugin_stem(spec)}.py (pytest: --kfuzz-plugin) to load "
           "it from where it is now")
    if spec.endswith(".py"):
        if not Path(spec).is_file():
            raise PluginError(f"plugin file {spec!r} recorded with the finding does not exist; "
                              f"{fix}")
        return
    try:
        found = importlib.util.find_spec(spec) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise PluginError(f"plugin module {spec!r} recorded with the finding cannot be found; "
                          f"install it, or {fix}")


def _import_plugin(spec: str) -> Any:
    path = Path(spec)
    try:
        if spec.endswith(".py"):
            if not path.is_file():
                raise PluginError(f"plugin file {spec!r} does not exist")
            return _import_file(path)
        return importlib.import_module(spec)
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(f"plugin {spec!r} failed to import: {type(exc).__name__}: {exc}") from None


def _import_file(path: Path) -> Any:
    name = f"kfuzz_plugin_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"plugin file {str(path)!r} cannot be imported")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def is_reference(name: str) -> bool:
    """True when `name` is a `module:function` reference rather than a variant name."""
    return ":" in name


@functools.cache
def import_callable(ref: str, role: str = "kernel") -> Callable[..., Any]:
    """The callable named by `ref` ("package.module:function", or "path/file.py:function";
    dots after the colon reach attributes). Raises BadCallable with the fix."""
    module_name, sep, attr = ref.rpartition(":")
    if not sep or not module_name or not attr or any(not p.isidentifier() for p in attr.split(".")):
        raise BadCallable(
            f"malformed --{role} {ref!r}; expected module:function, e.g. mypkg.kernels:rmsnorm"
        )
    try:
        module = _import_file(Path(module_name)) if module_name.endswith(".py") else (
            importlib.import_module(module_name)
        )
    except Exception as exc:
        raise BadCallable(
            f"--{role} {ref!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BadCallable(f"--{role} {ref!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BadCallable(f"--{role} {ref!r} is a {type(obj).__name__}, not a callable")
    return obj


# Callables known in this process only (a lambda, a function defined inside another), by the
# name `callable_name` gave them.
_LOCAL: dict[str, Callable[..., Any]] = {}


def callable_name(fn: Callable[..., Any], role: str = "kernel") -> str:
    """The name `fn` goes by in jobs, findings and the corpus: "module:qualname" when that
    reference imports back to `fn` itself (so worker processes and later replays find it),
    else a name that `resolve` knows in this process only (see `is_local`)."""
    module = getattr(fn, "__module__", None) or "__main__"
    qualname = getattr(fn, "__qualname__", None) or type(fn).__name__
    ref = f"{module}:{qualname}"
    try:
        if import_callable(ref, role) is fn:
            return ref
    except BadCallable:
        pass
    name, n = ref, 1
    while _LOCAL.get(name, fn) is not fn:
        n += 1
        name = f"{ref}#{n}"
    _LOCAL[name] = fn
    return name


def is_local(name: str) -> bool:
    """True when `name` is a callable that only this process can resolve (`callable_name`)."""
    return name in _LOCAL


def resolve(target: Target, role: str, name: str) -> Variant:
    """The kernel or oracle (`role`) called `name` on `target`: a variant name, a
    `module:function` reference or a name from `callable_name`. Oracles may also name a kernel
    variant, so that two kernels can be compared with each other. Raises UnknownVariant or
    BadCallable."""
    if name in _LOCAL:
        local = _LOCAL[name]
        if isinstance(local, Variant):
            return dataclasses.replace(local, name=name, doc=local.doc or "user callable")
        return Variant(name, local, doc="user callable")
    if is_reference(name):
        found = import_callable(name, role)
        if isinstance(found, Variant):  # `variant(fn, arrays=..., dtypes=...)` in a module
            return dataclasses.replace(found, name=name, doc=found.doc or "user callable")
        return Variant(name, found, doc="user callable")
    pools = [target.kernels] if role == "kernel" else [target.oracles, target.kernels]
    for pool in pools:
        if name in pool:
            return pool[name]
    known = list(target.kernels) if role == "kernel" else list(target.oracles) + list(target.kernels)
    raise UnknownVariant(role, name, target.name, known)

"""The parts a target is declared from (`kfuzz.targets.declare`): tensor specs (`tensor`) and
kernels or oracles (`variant`, or a callable, or a "module:function" reference imported on
its first call).

Nothing here imports torch; `tensor` imports Hypothesis (for its value strategies).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kfuzz.errors import PluginError

if TYPE_CHECKING:
    from kfuzz.targets.registry import Variant

DEFAULT_DTYPES = ("float32", "bfloat16", "float16")
# What `variant(dtypes=...)` may name: the floating dtypes a case draws.
FLOAT_DTYPES = ("float32", "bfloat16", "float16", "float64")
# What a kernel or oracle takes and returns (`variant(arrays=...)`).
ARRAYS = ("torch", "numpy", "jax")
# Integer inputs (indices, positions) are described and expected, but never drawn by
# `kfuzz.target`: a target with one builds its inputs itself (`declare.define`).
INTEGER_DTYPES = ("int64", "int32")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a declared target. dims: shape symbols (str) and fixed sizes
    (int); dtypes: dtype names to draw from, or the name of another input whose dtype it
    shares; values: a strategy of distribution descriptions (None for outputs); note: what
    the description adds after the shape and dtype ("about 1 +- 0.125")."""

    dims: tuple[str | int, ...]
    dtypes: tuple[str, ...] | str
    values: Any = None
    note: str = ""
    # The special values (`kfuzz.cases.strategies.SPECIALS`) the input's contract allows: its
    # values reach each of them. () for integer and output specs.
    specials: tuple[str, ...] = ()

    def describe(self) -> str:
        """E.g. "[rows, cols] bfloat16|float16", then ", " and the note if there is one, then
        the special values a float input's contract leaves out ("finite: no nan, inf")."""
        dtype = (f"same dtype as {self.dtypes}" if isinstance(self.dtypes, str)
                 else "|".join(self.dtypes))
        text = f"[{', '.join(map(str, self.dims))}] {dtype}"
        text = f"{text}, {self.note}" if self.note else text
        if self.values is not None and self.is_float:
            from kfuzz.cases.strategies import SPECIALS

            left_out = [s.replace("_", " ") for s in SPECIALS if s not in self.specials]
            if left_out:
                text += f"; excludes {', '.join(left_out)}"
        return text

    @property
    def is_float(self) -> bool:
        """Whether the spec's dtypes are floating (an input naming another: assumed so)."""
        return isinstance(self.dtypes, str) or not set(self.dtypes) & set(INTEGER_DTYPES)

    @property
    def symbols(self) -> list[str]:
        """The shape symbols, in order."""
        return [d for d in self.dims if isinstance(d, str)]


def tensor(shape: str, *, dtypes: Sequence[str] | str | None = None, values: Any = None,
           note: str = "", excludes: Sequence[str] = ()) -> TensorSpec:
    """A tensor spec for `target` and `define`. shape: space-separated symbols or sizes
    ("rows cols", "heads 64"; "" for a scalar tensor); dtypes: dtype names, friendliest first
    (default float32, bfloat16, float16; int64 and int32 only for a target that builds its
    own inputs), or another input's name to share its dtype; values: None (all value regimes),
    a list of distribution kinds ("normal", "edge", ...), one distribution dict, or a
    Hypothesis strategy of them; note: a few words the target's description adds ("logits");
    excludes: the special values ("nan", "inf", "subnormal", "signed_zero") the input's
    contract rules out. A float input's values reach every other one (drawn rarely: see
    `kfuzz.cases.strategies.distributions`), unless `values` is a dict or a strategy, which
    draws what it draws. Raises PluginError for a bad spec."""
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
    known = (*fst.DTYPES, *INTEGER_DTYPES)
    if isinstance(dtypes, str):
        if dtypes in known:
            raise PluginError(f"tensor({shape!r}, dtypes={dtypes!r}): pass a list, "
                              f"dtypes=[{dtypes!r}] (a bare name means another input's dtype)")
        choice: tuple[str, ...] | str = dtypes
    else:
        choice = tuple(dtypes or DEFAULT_DTYPES)
        bad = [d for d in choice if d not in known]
        if not choice or bad:
            raise PluginError(f"tensor({shape!r}): unknown dtype {bad[0] if bad else None!r}; "
                              f"choose from {', '.join(known)}")
    bad_specials = [x for x in excludes if x not in fst.SPECIALS]
    if isinstance(excludes, str) or bad_specials:
        raise PluginError(f"tensor({shape!r}, excludes={excludes!r}): give a list of "
                          f"{', '.join(fst.SPECIALS)}")
    is_float = isinstance(choice, str) or not set(choice) & set(INTEGER_DTYPES)
    specials = tuple(x for x in fst.SPECIALS if x not in excludes) if is_float else ()
    if values is None:
        strategy = fst.distributions(specials=specials)
    elif isinstance(values, st.SearchStrategy):
        strategy = values
    elif isinstance(values, Mapping):
        strategy = st.just(dict(values))
    else:
        try:
            strategy = fst.distributions(kinds=tuple(values), specials=specials)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"tensor({shape!r}, values={values!r}): {exc}") from None
    return TensorSpec(tuple(dims), choice, strategy, note, specials)


class Reference:
    """A kernel or oracle named "module:function" (or "path/file.py:function"), imported on
    its first call, so that declaring a target imports nothing of it (no torch, no Triton)."""

    def __init__(self, ref: str, role: str) -> None:
        self.ref, self.role = ref, role
        self.__name__ = self.__qualname__ = ref.rpartition(":")[2].rpartition(".")[2]
        self.__doc__ = None  # not the class's: a target's doc comes from its oracles' docs
        self._fn: Callable[..., Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self._fn
        if fn is None:  # imported once: an import's lookups cost more than a small kernel's call
            from kfuzz.targets.registry import import_callable

            fn = self._fn = import_callable(self.ref, self.role)
        return fn(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature | None:
        # Read only where a call did not fit the target's signature: the error names the
        # signature found. An import that fails leaves (*args, **kwargs).
        from kfuzz.targets.registry import import_callable

        try:
            return inspect.signature(import_callable(self.ref, self.role))
        except Exception:
            return None

    def __repr__(self) -> str:
        return f"Reference({self.ref!r})"


def _first_line(fn: Any) -> str:
    return (getattr(fn, "__doc__", None) or "").strip().split("\n")[0]


def variant(fn: Callable[..., Any] | str, doc: str = "", *, arrays: str = "torch",
            dtypes: Sequence[str] | None = None, library: str | None = None,
            **params: Any) -> Variant:
    """A kernel or oracle for the `kernels`/`oracles` mappings of `target` and `define`, where
    it needs more than a bare callable. fn: a callable, or a "module:function" reference
    imported on first call; doc: one line for `kfuzz targets` (default: the first line of
    fn's docstring); arrays: what fn takes and returns, "torch" (tensors, the default),
    "numpy" or "jax" (arrays; BF16 as `ml_dtypes.bfloat16`, converted by kfuzz at the call);
    dtypes: the dtype names fn implements (default: all), so that a run draws no case of
    another dtype for it and says which it left out; library: the kfuzz extra fn needs, for a
    third-party library's kernel (`kfuzz.targets.libraries`); params: keyword arguments bound
    at every call (a tile size, say). Returns a `kfuzz.targets.registry.Variant` that takes its name
    from its key. A module-level variant is also a `--kernel module:name`.
    Raises PluginError for a malformed reference, a non-callable, an unknown array kind or
    dtype."""
    from kfuzz.targets.registry import Variant

    if arrays not in ARRAYS:
        raise PluginError(f"variant(arrays={arrays!r}): choose from {', '.join(ARRAYS)}")
    implemented = None
    if dtypes is not None:
        if isinstance(dtypes, str):
            dtypes = [dtypes]
        implemented = tuple(dtypes)
        bad = [d for d in implemented if d not in FLOAT_DTYPES]
        if not implemented or bad:
            raise PluginError(f"variant(dtypes={list(implemented)!r}): unknown dtype "
                              f"{bad[0] if bad else None!r}; choose from "
                              f"{', '.join(FLOAT_DTYPES)}")
    if isinstance(fn, str):
        _check_reference(fn, "variant")
        return Variant("", Reference(fn, "variant"), doc, params, arrays, implemented, library)
    if not callable(fn):
        raise PluginError(f"variant() takes a callable or a 'module:function' reference, "
                          f"not a {type(fn).__name__}")
    return Variant("", fn, doc or _first_line(fn), params, arrays, implemented, library)


def _check_reference(ref: str, what: str) -> None:
    module, sep, attr = ref.rpartition(":")
    if not (sep and module and attr and all(p.isidentifier() for p in attr.split("."))):
        raise PluginError(f"{what} {ref!r} is not a 'module:function' reference, e.g. "
                          "'mypkg.kernels:rmsnorm'")


def as_variants(role: str, fns: Any, name: str) -> dict[str, Variant]:
    """The kernels or oracles (`role`) of target `name` as Variants named by their keys.
    fns: None, one callable or reference, or name -> callable, "module:function" reference or
    `variant(...)`. Raises PluginError for anything else."""
    from kfuzz.targets.registry import Variant

    if fns is None:
        return {}
    if isinstance(fns, str):
        fns = {fns.rpartition(":")[2].rpartition(".")[2]: fns}
    elif callable(fns) and not isinstance(fns, Mapping):
        fns = {getattr(fns, "__name__", role): fns}
    if not isinstance(fns, Mapping):
        raise PluginError(f"target {name!r}: {role}s must be a callable or a dict of them, "
                          f"not a {type(fns).__name__}")
    out = {}
    for key, fn in fns.items():
        if isinstance(fn, str):
            _check_reference(fn, f"target {name!r}: {role} {key!r}:")
            fn = Variant(key, Reference(fn, role))
        elif not isinstance(fn, Variant):
            if not callable(fn):
                raise PluginError(f"target {name!r}: {role} {key!r} is a {type(fn).__name__}, "
                                  "not a callable")
            fn = Variant(key, fn, _first_line(fn))
        elif isinstance(fn.fn, Reference):
            fn = replace(fn, fn=Reference(fn.fn.ref, role))
        out[key] = fn if fn.name == key else replace(fn, name=key)
    return out

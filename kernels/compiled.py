"""torch.compile (Inductor) versions of eager kernels, compiled once per shape class.

`compiled(fn)` returns a callable with fn's signature that compiles fn with
`torch.compile(dynamic=True, fullgraph=True)` on first use of each *shape class* and reuses
the result afterwards, so compile time stays out of the per-case path. A shape class is what
a dynamic-shape graph cannot abstract over: the device, dtype and rank of every tensor
argument, and which of its sizes are 0 or 1 (torch.compile specialises those).

Each shape class gets its own copy of fn's code object. Dynamo counts recompilations per code
object and, once `recompile_limit` (8) is reached, silently runs the function eagerly: a
campaign over two dtypes and many shapes would then compare "compiled" kernels that are
eager. One code object per class keeps each class to a few compilations (Inductor may still
guard on a size range, e.g. rows longer than 4096 on the CPU), and a call that finds its class
at the limit raises instead of returning what may be an eager result. (Checking the cache
after the call costs under a microsecond; patching Dynamo's config around every call to make
it raise itself cost about 25 us.)
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Hashable
from typing import Any

import torch

ShapeClass = tuple[Hashable, ...]


def shape_class(args: tuple[Any, ...], kwargs: dict[str, Any]) -> ShapeClass:
    """The shape class of a call: per tensor argument (in order, keyword ones by name), its
    device, dtype, and each size as 0, 1, or -1 for "any other".

    Takes: the call's positional and keyword arguments.
    Returns: a hashable key. Raises: nothing.
    """
    named = [(str(i), a) for i, a in enumerate(args)] + sorted(kwargs.items())
    return tuple(
        (name, str(value.device), value.dtype, tuple(s if s in (0, 1) else -1 for s in value.shape))
        for name, value in named
        if isinstance(value, torch.Tensor)
    )


def fresh_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of fn with its own code object (so Dynamo keeps a separate cache for it)."""
    code = fn.__code__.replace()
    copy = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__qualname__ = fn.__qualname__
    copy.__doc__ = fn.__doc__
    return copy


class Compiled:
    """fn compiled by Inductor, once per shape class. Call it like fn.

    `compilations` counts the shape classes compiled so far (a class compiles on its first
    call).
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self._by_class: dict[ShapeClass, tuple[Callable[..., Any], types.CodeType]] = {}
        functools.update_wrapper(self, fn)

    @property
    def compilations(self) -> int:
        """How many shape classes have a compiled function."""
        return len(self._by_class)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = shape_class(args, kwargs)
        entry = self._by_class.get(key)
        if entry is None:
            fresh = fresh_function(self.fn)
            entry = (torch.compile(fresh, dynamic=True, fullgraph=True), fresh.__code__)
            self._by_class[key] = entry
        compiled_fn, code = entry
        result = compiled_fn(*args, **kwargs)
        from torch._dynamo.eval_frame import _debug_get_cache_entry_list

        limit = torch._dynamo.config.recompile_limit
        if len(_debug_get_cache_entry_list(code)) >= limit:
            raise RuntimeError(
                f"torch.compile of {self.fn.__name__} reached its recompile limit ({limit}) for "
                f"shape class {key}; its results may be eager ones, so none is returned"
            )
        return result


def compiled(fn: Callable[..., Any]) -> Compiled:
    """`fn` compiled by torch.compile (Inductor), lazily and once per shape class.

    Takes: a function of tensors (and scalars) that Dynamo can capture in one graph.
    Returns: a `Compiled` callable with fn's signature; nothing is compiled (or imported from
    torch._dynamo) until it is first called.
    Raises: nothing here; a call raises what torch.compile raises for fn (e.g. a graph break,
    since fullgraph=True, or a C++ compiler missing on a CPU machine).
    """
    return Compiled(fn)

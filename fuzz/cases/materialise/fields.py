"""Fields: the hashes of one tensor's coordinates under one key, and the numbers drawn from them.

Three implementations give the same bits (tests/test_position_stable.py checks): `Field` with
torch on any device (what builds inputs on a GPU), `HostField` with NumPy on the CPU (a
fraction of torch's per-call cost on small tensors, half its memory traffic on large ones) and
`ScalarField` element by element in Python (tensors of a few elements, where NumPy's per-call
cost dominates). Each applies the hash and the maps of `kfuzz.cases.materialise.core` to its
own kind of operand; none has arithmetic of its own.

An element's hash is lowbias32(h0[i0] ^ h1[i1] ^ ... ^ draw_key(key, draw)), each coordinate
hashed on its own axis (`_axis_hashes`), so it does not depend on the extent of any axis: drop
a row and every other row keeps its values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch
from kfuzz.cases.materialise.core import (
    FLOAT32_NORMALS,
    M32,
    axis_salt,
    below_of,
    draw_key,
    lowbias32,
    normal32_of,
    normal32_table,
    normal_of,
    normal_table,
    range_normal_of,
    signs_of,
    uniform_of,
)
from kfuzz.cases.materialise.hostnormals import host_f64, host_normals
from kfuzz.cases.materialise.rounded import ranged

# An axis's coordinates: an int, the first of consecutive ones, or the coordinates themselves.
Axis = int | tuple[int, ...]
Coords = Sequence[int | Sequence[int]] | None
# Tensors of at most this many elements are built by `ScalarField` on the CPU.
SCALAR_MAX = 16
# The largest shape (in elements) whose coordinate hashes are kept between fields (a few such
# shapes, 8 MiB each at most): a search builds one shape many times.
LARGE_COORDS = 1 << 21


class Draws(Protocol):
    """What every field offers: per element and per draw number, independent 32-bit hashes
    (`bits`) and the numbers drawn from them; all return tensors of the field's shape.
    `version`: the materialisation version whose normals the field draws (`normal`; every
    other number is the same in versions 2 to 5)."""

    key: int
    shape: tuple[int, ...]
    version: int

    def bits(self, draw: int) -> torch.Tensor:
        """int64 tensor of 32-bit hashes, one per element, for draw number `draw`."""

    def uniform(self, draw: int) -> torch.Tensor:
        """float64 in (0, 1): (bits + 0.5) / 2**32, exact."""

    def below(self, draw: int, n: int) -> torch.Tensor:
        """int64 in [0, n) (n >= 1), by modulo of the 32-bit hashes."""

    def signs(self, draw: int) -> torch.Tensor:
        """float64 +1 or -1."""

    def normal(self, draw: int, scale: float = 1.0,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """float64 standard normals (truncated at +-4.33), see `core.normal_of`, times
        `scale` and rounded to `dtype`: bit for bit `(normal(draw) * scale).to(dtype)`. From
        version 4 on (`core.FLOAT32_NORMALS`) FP32 normals are `core.normal32_of`'s, in float32
        arithmetic; from version 5 on (`core.RANGED_NORMALS`) BF16 and FP16 normals are
        `core.range_normal_of`'s times `scale`, rounded."""


def axes(coords: Coords, shape: tuple[int, ...]) -> tuple[Axis, ...]:
    """`coords` checked against `shape`, as one `Axis` per axis; () for none or the plain
    coordinates (every axis from 0). Raises ValueError for a wrong number of axes or a list
    shorter than its axis."""
    if coords is None:
        return ()
    if len(coords) != len(shape):
        raise ValueError(f"{len(coords)} axes of coordinates for a {len(shape)}-axis field "
                         f"{list(shape)}")
    out: list[Axis] = []
    for axis, (c, size) in enumerate(zip(coords, shape, strict=True)):
        if isinstance(c, int):
            out.append(int(c))
        elif len(c) < size:
            raise ValueError(f"axis {axis} has {size} elements and {len(c)} coordinates")
        else:
            out.append(tuple(int(i) for i in c[:size]))
    return tuple(out) if any(a != 0 for a in out) else ()


@functools.lru_cache(maxsize=512)
def _axis_hashes(axis: int, size: int, device: str, start: Axis = 0) -> torch.Tensor:
    """lowbias32(i + salt of the axis) for the axis's coordinates i (from `start` on, or the
    first `size` of a tuple), int64: read-only, shared by every field."""
    if isinstance(start, tuple):
        coords = torch.tensor(start[:size], dtype=torch.int64, device=device)
    else:
        coords = torch.arange(start, start + size, dtype=torch.int64, device=device)
    coords += axis_salt(axis)
    coords &= M32
    return lowbias32(coords)


def _torch_f64(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float64)


def _torch_f32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32)


def _scaled(x: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """float64 `x` times `scale` (skipped for 1: x * 1.0 is x, bit for bit), rounded to
    `dtype`."""
    if scale != 1.0:
        x = x * scale
    return x if x.dtype is dtype else x.to(dtype)


class _DeviceTable:
    """The normal table on a device, read as `core.normal_of` reads it: `table[index]` is a
    pair of new tensors of the index's shape (indexing a tensor itself gives a view for a 0-d
    index)."""

    __slots__ = ("low", "slope")

    def __init__(self, low: torch.Tensor, slope: torch.Tensor) -> None:
        self.low, self.slope = low, slope

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # index_select: half torch.take's time on a CPU.
        flat = index.reshape(-1)
        return (torch.index_select(self.low, 0, flat).view(index.shape),
                torch.index_select(self.slope, 0, flat).view(index.shape))


@functools.cache
def _device_table(device: str) -> _DeviceTable:
    low, slope = normal_table()
    return _DeviceTable(low.to(device), slope.to(device))


@functools.cache
def _device_table32(device: str) -> _DeviceTable:
    low, slope = normal32_table()
    return _DeviceTable(low.to(device), slope.to(device))


class Field:
    """The field computed with torch on `device`. `shape` may hold 1 in place of a dimension
    to draw one value per slice (e.g. per row). `coords`: per axis, the coordinate of its first
    element (0 by default; the others follow it) or the coordinates of its elements, so that a
    field of shape (2, 3) with coords (0, [1, 4, 5]) holds the elements [0:2, [1, 4, 5]] of a
    larger field. `version`: whose normals it draws (see `Draws`). Raises ValueError for
    coordinates that do not fit `shape`."""

    def __init__(self, key: int, shape: Sequence[int], device: str = "cpu",
                 coords: Coords = None, version: int = 2) -> None:
        self.key = key
        self.shape = tuple(map(int, shape))
        self.device = device
        self.version = version
        starts = axes(coords, self.shape) or (0,) * len(self.shape)
        hashes = torch.zeros((), dtype=torch.int64, device=device)
        for axis, size in enumerate(self.shape):
            view = [1] * len(self.shape)
            view[axis] = size
            hashes = hashes ^ _axis_hashes(axis, size, device, starts[axis]).view(view)
        self.coords = hashes.expand(self.shape)

    def _hashes(self, draw: int) -> torch.Tensor:
        # `^` makes a new tensor of the full shape, which the hash then updates in place.
        return lowbias32(self.coords ^ draw_key(self.key, draw))

    def bits(self, draw: int) -> torch.Tensor:
        """See `Draws.bits`."""
        return self._hashes(draw)

    def uniform(self, draw: int) -> torch.Tensor:
        """See `Draws.uniform`."""
        return uniform_of(self._hashes(draw), _torch_f64)

    def below(self, draw: int, n: int) -> torch.Tensor:
        """See `Draws.below`."""
        return below_of(self._hashes(draw), n)

    def signs(self, draw: int) -> torch.Tensor:
        """See `Draws.signs`."""
        return signs_of(self._hashes(draw), _torch_f64)

    def normal(self, draw: int, scale: float = 1.0,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """See `Draws.normal`."""
        if self.version >= FLOAT32_NORMALS and dtype is torch.float32:
            return normal32_of(self._hashes(draw), _torch_f32, _device_table32(self.device),
                               scale)
        of = range_normal_of if ranged(self.version, dtype) else normal_of
        x = of(self._hashes(draw), _torch_f64, _device_table(self.device))
        return _scaled(x, scale, dtype)


class HostField:
    """The field computed with NumPy on the CPU (same arguments as `Field`, less the device),
    over the flat coordinates: no operation meets NumPy's rules for 0-d arrays."""

    def __init__(self, key: int, shape: Sequence[int], coords: Coords = None,
                 version: int = 2) -> None:
        self.key = key
        self.shape = tuple(map(int, shape))
        self.device = "cpu"
        self.version = version
        self.coords = _host_coords(self.shape, axes(coords, self.shape))

    def _draw(self, draw: int, to: Callable[[np.ndarray], np.ndarray],
              dtype: type[np.generic]) -> torch.Tensor:
        """`to` applied to the hashes for `draw`, as a tensor of `dtype`."""
        flat = self.coords.reshape(-1)
        k = np.uint32(draw_key(self.key, draw))
        out = np.asarray(to(lowbias32(flat ^ k, wrap=False)), dtype=dtype)
        return torch.from_numpy(out.reshape(self.shape))

    def bits(self, draw: int) -> torch.Tensor:
        """See `Draws.bits`."""
        return self._draw(draw, _same, np.int64)

    def uniform(self, draw: int) -> torch.Tensor:
        """See `Draws.uniform`."""
        return self._draw(draw, lambda h: uniform_of(h, host_f64), np.float64)

    def below(self, draw: int, n: int) -> torch.Tensor:
        """See `Draws.below`."""
        return self._draw(draw, lambda h: below_of(h, n), np.int64)

    def signs(self, draw: int) -> torch.Tensor:
        """See `Draws.signs`."""
        return self._draw(draw, lambda h: signs_of(h, host_f64), np.float64)

    def normal(self, draw: int, scale: float = 1.0,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """See `Draws.normal`."""
        flat = self.coords.reshape(-1)
        k = np.uint32(draw_key(self.key, draw))
        return host_normals(lambda start, stop: lowbias32(flat[start:stop] ^ k, wrap=False),
                            flat.size, scale, dtype, self.version).view(self.shape)


def _same(x: np.ndarray) -> np.ndarray:
    return x


@functools.lru_cache(maxsize=512)
def _host_axis_hashes(axis: int, size: int, start: Axis = 0) -> np.ndarray:
    out = _axis_hashes(axis, size, "cpu", start).numpy().astype(np.uint32)
    out.flags.writeable = False
    return out


def _host_coords(shape: tuple[int, ...], axes: tuple[Axis, ...] = ()) -> np.ndarray:
    """h0[i0] ^ h1[i1] ^ ... over `shape` at the axes' coordinates, uint32 (read-only; cached:
    many small shapes, a few large ones, none of more than LARGE_COORDS elements)."""
    numel = math.prod(shape)
    if numel <= 1 << 16:
        return _host_coords_cached(shape, axes)
    if numel <= LARGE_COORDS:
        return _host_coords_large(shape, axes)
    return _host_coords_built(shape, axes)


@functools.lru_cache(maxsize=256)
def _host_coords_cached(shape: tuple[int, ...], axes: tuple[Axis, ...]) -> np.ndarray:
    return _host_coords_built(shape, axes)


@functools.lru_cache(maxsize=4)
def _host_coords_large(shape: tuple[int, ...], axes: tuple[Axis, ...]) -> np.ndarray:
    return _host_coords_built(shape, axes)


def _host_coords_built(shape: tuple[int, ...], axes: tuple[Axis, ...]) -> np.ndarray:
    starts = axes or (0,) * len(shape)
    base = np.zeros((), dtype=np.uint32)
    for axis, size in enumerate(shape):
        view = [1] * len(shape)
        view[axis] = size
        base = base ^ _host_axis_hashes(axis, size, starts[axis]).reshape(view)
    if base.shape != shape:  # an axis of size 1 everywhere, or no axes
        base = np.broadcast_to(base, shape)
    base.flags.writeable = False
    return base


_INT64, _FLOAT64 = np.dtype(np.int64), np.dtype(np.float64)


class ScalarField:
    """The field computed element by element with Python ints and floats (same arguments as
    `HostField`): no per-call cost of NumPy or torch but one array made per draw."""

    def __init__(self, key: int, shape: Sequence[int], coords: Coords = None,
                 version: int = 2) -> None:
        self.key = key
        self.shape = tuple(map(int, shape))
        self.device = "cpu"
        self.version = version
        self.coords = _scalar_coords(self.shape, () if coords is None else axes(coords, self.shape))

    def _tensor(self, items: list[int] | list[float], dtype: np.dtype) -> torch.Tensor:
        # Through NumPy: less than half of torch.tensor's cost on a short list.
        flat = np.fromiter(items, dtype, len(items))
        return torch.from_numpy(flat if flat.shape == self.shape else flat.reshape(self.shape))

    def bits(self, draw: int) -> torch.Tensor:
        """See `Draws.bits`."""
        k = draw_key(self.key, draw)
        return self._tensor([lowbias32(c ^ k) for c in self.coords], _INT64)

    def uniform(self, draw: int) -> torch.Tensor:
        """See `Draws.uniform`."""
        k = draw_key(self.key, draw)
        return self._tensor([uniform_of(lowbias32(c ^ k), None) for c in self.coords],
                            _FLOAT64)

    def below(self, draw: int, n: int) -> torch.Tensor:
        """See `Draws.below`."""
        k = draw_key(self.key, draw)
        return self._tensor([below_of(lowbias32(c ^ k), n) for c in self.coords], _INT64)

    def signs(self, draw: int) -> torch.Tensor:
        """See `Draws.signs`."""
        k = draw_key(self.key, draw)
        return self._tensor([signs_of(lowbias32(c ^ k), None) for c in self.coords],
                            _FLOAT64)

    def normal(self, draw: int, scale: float = 1.0,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """See `Draws.normal`."""
        k = draw_key(self.key, draw)
        if self.version >= FLOAT32_NORMALS and dtype is torch.float32:
            table32 = _scalar_table32()
            drawn = [normal32_of(lowbias32(c ^ k), None, table32, scale) for c in self.coords]
            return self._tensor(drawn, _FLOAT64).to(torch.float32)  # exact: float32 values
        table = _scalar_table()
        of = range_normal_of if ranged(self.version, dtype) else normal_of
        drawn = [of(lowbias32(c ^ k), None, table) for c in self.coords]
        if scale != 1.0:  # float64 products in Python, the same bits as torch's
            drawn = [v * scale for v in drawn]
        x = self._tensor(drawn, _FLOAT64)
        return x if dtype is torch.float64 else x.to(dtype)


@functools.lru_cache(maxsize=256)
def _scalar_coords(shape: tuple[int, ...], axes: tuple[Axis, ...] = ()) -> tuple[int, ...]:
    return tuple(int(c) for c in np.asarray(_host_coords(shape, axes)).reshape(-1).tolist())


@functools.cache
def _scalar_table() -> list[tuple[float, float]]:
    low, slope = normal_table()
    return list(zip(low.tolist(), slope.tolist(), strict=True))


@functools.cache
def _scalar_table32() -> list[tuple[float, float]]:
    low, slope = normal32_table()
    return list(zip(low.tolist(), slope.tolist(), strict=True))


def make_field(key: int, shape: Sequence[int], device: str = "cpu",
               coords: Coords = None, version: int = 2) -> Draws:
    """The field for `device`: computed on the host for the CPU (element by element for a
    few elements), with torch elsewhere; `version`: whose normals it draws (see `Draws`).
    Raises ValueError for coordinates that do not fit."""
    if device != "cpu":
        return Field(key, shape, device, coords, version)
    if math.prod(map(int, shape)) <= SCALAR_MAX:
        return ScalarField(key, shape, coords, version)
    return HostField(key, shape, coords, version)

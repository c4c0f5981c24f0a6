"""A counter-based generator: random bits as a hash of (seed, stream, coordinates, draw).

Nothing here keeps state between elements, so an element's bits do not depend on the tensor's
other dimensions: drop a row and every other row keeps its values. Hashes are 32-bit values
held in int64 tensors (multiplications wrap and are masked back to 32 bits), computed with
integer ops only; the maps to floats use exact conversions, a lookup table and correctly
rounded float64 arithmetic. The same call therefore gives the same bits on every device.
"""

from __future__ import annotations

import array
import functools
import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from kfuzz.errors import CaseError

M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9
# Normal quantiles at (i + 0.5) / 65537: the inverse-CDF table for `Field.normal`.
_TABLE_BITS = 16
_INV32 = 2.0**-32


def mix(x: int) -> int:
    """The 32-bit finaliser of `mix_tensor`, on a Python int."""
    x &= M32
    x ^= x >> 16
    x = (x * 0x21F0AAAD) & M32
    x ^= x >> 15
    x = (x * 0xD35A2D97) & M32
    return x ^ (x >> 15)


def mix_tensor(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (Wellons' lowbias32) of every element of an int64 tensor of
    values in [0, 2**32), in place; returns `x`."""
    x.bitwise_xor_(x >> 16)
    x.mul_(0x21F0AAAD).bitwise_and_(M32)
    x.bitwise_xor_(x >> 15)
    x.mul_(0xD35A2D97).bitwise_and_(M32)
    return x.bitwise_xor_(x >> 15)


def key_of(*parts: int | str) -> int:
    """A 32-bit key from ints and strings (stable across processes and platforms)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


@functools.cache
def _normal_table(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal quantiles at (i + 0.5) / 65537 and the slope to the next one."""
    n = 1 << _TABLE_BITS
    p = (torch.arange(n + 1, dtype=torch.float64) + 0.5) / (n + 1)
    # Computed once on the CPU, then copied: the table is data, the same bits on every device.
    q = torch.special.ndtri(p)
    return q[:-1].contiguous().to(device), (q[1:] - q[:-1]).to(device)


# An axis's coordinates: an int, the first of consecutive ones, or the coordinates themselves.
Axis = int | tuple[int, ...]


@functools.lru_cache(maxsize=512)
def _axis_hashes(axis: int, size: int, device: str, start: Axis = 0) -> torch.Tensor:
    """mix(i + salt of the axis) for the axis's coordinates i (from `start` on, or the first
    `size` of a tuple): read-only, shared by every Field."""
    if isinstance(start, tuple):
        coords = torch.tensor(start[:size], dtype=torch.int64, device=device)
    else:
        coords = torch.arange(start, start + size, dtype=torch.int64, device=device)
    coords.add_(mix((axis + 1) * _GOLDEN)).bitwise_and_(M32)
    return mix_tensor(coords)


def _axes(coords: Sequence[int | Sequence[int]] | None,
          shape: tuple[int, ...]) -> tuple[Axis, ...]:
    """`coords` checked against `shape`, as one `Axis` per axis; () for none or the plain
    coordinates (every axis from 0)."""
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


class Field:
    """The hashes of one tensor's coordinates under one key: `bits(draw)` gives independent
    32-bit values per element for each draw number; `uniform`, `normal` map them to floats.
    `shape` may hold 1 in place of a dimension to draw one value per slice (e.g. per row).
    `coords`: per axis, the coordinate of its first element (0 by default; the others follow
    it) or the coordinates of its elements, so that a field of shape (2, 3) with coords
    (0, [1, 4, 5]) holds the elements [0:2, [1, 4, 5]] of a larger field."""

    def __init__(self, key: int, shape: Sequence[int], device: str = "cpu",
                 coords: Sequence[int | Sequence[int]] | None = None) -> None:
        self.key = key
        self.shape = tuple(int(s) for s in shape)
        self.device = device
        starts = _axes(coords, self.shape) or (0,) * len(self.shape)
        if not self.shape:
            self.base = torch.full((), key, dtype=torch.int64, device=device)
            return
        # key ^ h0[i0] ^ h1[i1] ^ ...: each coordinate hashed on its own axis, so an element's
        # hash does not depend on the extent of any axis.
        base = None
        for axis, size in enumerate(self.shape):
            view = [1] * len(self.shape)
            view[axis] = size
            coords = _axis_hashes(axis, size, device, starts[axis]).view(view)
            base = coords if base is None else base ^ coords
        assert base is not None
        self.base = base.expand(self.shape) ^ key

    def bits(self, draw: int) -> torch.Tensor:
        """int64 tensor of 32-bit hashes, one per element, for draw number `draw`."""
        return mix_tensor(self.base ^ mix(self.key + (draw + 1) * _GOLDEN))

    def uniform(self, draw: int) -> torch.Tensor:
        """float64 in (0, 1): (bits + 0.5) / 2**32, exact."""
        return (self.bits(draw).to(torch.float64) + 0.5) * (2.0 ** -32)

    def below(self, draw: int, n: int) -> torch.Tensor:
        """int64 in [0, n) (n >= 1), by modulo of 32-bit hashes."""
        return self.bits(draw) % max(int(n), 1)

    def signs(self, draw: int) -> torch.Tensor:
        """float64 +1 or -1."""
        return (self.bits(draw) & 1).to(torch.float64).mul_(2).sub_(1)

    def normal(self, draw: int) -> torch.Tensor:
        """float64 standard normals (truncated at +-4.33), by linear interpolation in a table of
        quantiles: the high 16 bits of the hash pick the interval, its low 16 bits and 16 more
        from a cheap remix of it give 32 bits of position inside it."""
        low, slope = _normal_table(self.device)
        h = self.bits(draw)
        index = (h >> 16).view(-1)
        remix = (h * 0x2C1B3C6D).bitwise_and_(M32)
        frac = (h & 0xFFFF).to(torch.float64).mul_(65536.0)
        frac.add_((remix >> 16).to(torch.float64)).mul_(2.0 ** -32)
        x = torch.index_select(slope, 0, index).view(h.shape).mul_(frac)
        return x.add_(torch.index_select(low, 0, index).view(h.shape))


class HostField(Field):
    """`Field` computed with NumPy on the host: the same integer and float64 operations in the
    same order (uint32 arithmetic wraps as the masked int64 arithmetic does), so the same bits
    as `Field` gives on any device (tests/test_position_stable.py checks), with a fraction of
    the per-call cost on small tensors and half the memory traffic on large ones."""

    def __init__(self, key: int, shape: Sequence[int],
                 coords: Sequence[int | Sequence[int]] | None = None) -> None:
        self.key = key
        self.shape = tuple(int(s) for s in shape)
        self.device = "cpu"
        # The coordinates' hashes without the key, which joins each draw's constant instead:
        # (coords ^ key) ^ k == coords ^ (key ^ k), the same bits as `Field`.
        self.coords = _host_coords(self.shape, _axes(coords, self.shape))

    def _bits(self, draw: int) -> np.ndarray:
        x = np.bitwise_xor(self.coords,
                           np.uint32(self.key ^ mix(self.key + (draw + 1) * _GOLDEN)),
                           out=np.empty(self.shape, dtype=np.uint32))
        x ^= x >> np.uint32(16)
        x *= np.uint32(0x21F0AAAD)
        x ^= x >> np.uint32(15)
        x *= np.uint32(0xD35A2D97)
        x ^= x >> np.uint32(15)
        return x

    def bits(self, draw: int) -> torch.Tensor:
        return _tensor(self._bits(draw).astype(np.int64))

    def uniform(self, draw: int) -> torch.Tensor:
        x = self._bits(draw).astype(np.float64)
        x += 0.5
        x *= 2.0 ** -32
        return _tensor(x)

    def below(self, draw: int, n: int) -> torch.Tensor:
        return _tensor((self._bits(draw) % np.uint32(max(int(n), 1))).astype(np.int64))

    def signs(self, draw: int) -> torch.Tensor:
        x = (self._bits(draw) & np.uint32(1)).astype(np.float64)
        x *= 2
        x -= 1
        return _tensor(x)

    def normal(self, draw: int) -> torch.Tensor:
        low, slope = _host_normal_table()
        h = self._bits(draw)
        index = h >> np.uint32(16)
        remix = h * np.uint32(0x2C1B3C6D)
        frac = (h & np.uint32(0xFFFF)).astype(np.float64)
        frac *= 65536.0
        frac += (remix >> np.uint32(16)).astype(np.float64)
        frac *= 2.0 ** -32
        x = slope[index]
        x *= frac
        x += low[index]
        return _tensor(x)


@functools.lru_cache(maxsize=512)
def _host_axis_hashes(axis: int, size: int, start: Axis = 0) -> np.ndarray:
    out = _axis_hashes(axis, size, "cpu", start).numpy().astype(np.uint32)
    out.flags.writeable = False
    return out


def _host_coords(shape: tuple[int, ...], axes: tuple[Axis, ...] = ()) -> np.ndarray:
    """h0[i0] ^ h1[i1] ^ ... over `shape` at the axes' coordinates (read-only; small shapes
    are cached)."""
    if math.prod(shape) <= 1 << 16:
        return _host_coords_cached(shape, axes)
    return _host_coords_built(shape, axes)


@functools.lru_cache(maxsize=256)
def _host_coords_cached(shape: tuple[int, ...], axes: tuple[Axis, ...]) -> np.ndarray:
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


@functools.cache
def _host_normal_table() -> tuple[np.ndarray, np.ndarray]:
    low, slope = _normal_table("cpu")
    return low.numpy(), slope.numpy()


def _tensor(a: np.ndarray) -> torch.Tensor:
    # np.asarray: an operation on a 0-d array gives a NumPy scalar.
    return torch.from_numpy(np.asarray(a))


class ScalarField(Field):
    """`Field` computed element by element with Python ints and floats: the same integer and
    float64 operations in the same order as `HostField`, so the same bits, without NumPy's
    per-call cost, which dominates on tensors of a few elements (a [1, 8] case's inputs)."""

    def __init__(self, key: int, shape: Sequence[int],
                 coords: Sequence[int | Sequence[int]] | None = None) -> None:
        self.key = key
        self.shape = tuple(int(s) for s in shape)
        self.device = "cpu"
        self.coords = _scalar_coords(self.shape, _axes(coords, self.shape))

    def _bits(self, draw: int) -> list[int]:
        k = self.key ^ mix(self.key + (draw + 1) * _GOLDEN)
        out = []
        for c in self.coords:  # `mix` inlined: a call per element costs a tenth of a case
            x = c ^ k
            x ^= x >> 16
            x = (x * 0x21F0AAAD) & M32
            x ^= x >> 15
            x = (x * 0xD35A2D97) & M32
            out.append(x ^ (x >> 15))
        return out

    def _tensor(self, items: list[int] | list[float], dtype: torch.dtype) -> torch.Tensor:
        if not items:
            return torch.empty(self.shape, dtype=dtype)
        # Through a typed buffer: a third of torch.tensor's cost on a short list.
        flat = torch.frombuffer(array.array("q" if dtype == torch.int64 else "d", items),
                                dtype=dtype)
        return flat if flat.shape == self.shape else flat.view(self.shape)

    def bits(self, draw: int) -> torch.Tensor:
        return self._tensor(self._bits(draw), torch.int64)

    def uniform(self, draw: int) -> torch.Tensor:
        return self._tensor([(h + 0.5) * 2.0 ** -32 for h in self._bits(draw)], torch.float64)

    def below(self, draw: int, n: int) -> torch.Tensor:
        n = max(int(n), 1)
        return self._tensor([h % n for h in self._bits(draw)], torch.int64)

    def signs(self, draw: int) -> torch.Tensor:
        return self._tensor([(h & 1) * 2.0 - 1.0 for h in self._bits(draw)], torch.float64)

    def normal(self, draw: int) -> torch.Tensor:
        # `HostField.normal`'s mapping: the same operations in the same order.
        low, slope = _scalar_normal_table()
        out = []
        for h in self._bits(draw):
            i = h >> 16
            out.append(slope[i] * (((h & 0xFFFF) * 65536.0 + (((h * 0x2C1B3C6D) & M32) >> 16))
                                   * _INV32) + low[i])
        return self._tensor(out, torch.float64)


# Tensors of at most this many elements are built by `ScalarField` on the CPU.
SCALAR_MAX = 16


@functools.lru_cache(maxsize=256)
def _scalar_coords(shape: tuple[int, ...], axes: tuple[Axis, ...] = ()) -> tuple[int, ...]:
    return tuple(int(c) for c in np.asarray(_host_coords(shape, axes)).reshape(-1).tolist())


@functools.cache
def _scalar_normal_table() -> tuple[list[float], list[float]]:
    low, slope = _host_normal_table()
    return low.tolist(), slope.tolist()


def make_field(key: int, shape: Sequence[int], device: str = "cpu",
               coords: Sequence[int | Sequence[int]] | None = None) -> Field:
    """The Field for `device`: computed on the host for the CPU (element by element for a
    few elements), with torch elsewhere."""
    if device != "cpu":
        return Field(key, shape, device, coords)
    if math.prod(int(s) for s in shape) <= SCALAR_MAX:
        return ScalarField(key, shape, coords)
    return HostField(key, shape, coords)


def pow2(exponent: torch.Tensor) -> torch.Tensor:
    """2.0 ** exponent for an int64 tensor in [-1022, 1023], built from the bit pattern (exact
    on every device)."""
    return ((exponent + 1023) << 52).view(torch.float64)


class CounterGenerator(torch.Generator):
    """The generator a version-2 or -3 case is built with. Each call of `stream(name)` gives
    the key of one input; without a name, inputs are keyed by call order. It is also a CPU
    `torch.Generator` seeded with the case's seed, so a target that draws with
    `torch.randn(..., generator=gen)` still runs (sequentially, without position stability).
    `device`: where the tensors it builds live (`target_device`).

    `coords` (version 3): per input label, per field of that input (its key relative to the
    input's key, as a decimal string: "0" for the values themselves), the coordinates of each
    axis (see `Field`). A field with coordinates holds a selection of the elements of the
    field without: the shrinker drops heads or cache rows of a case this way, first, last or
    in the middle, and keeps every other element.
    `fields`, when set to a list, records (label, field, shape) of every field made."""

    def __new__(cls, seed: int, device: str = "cpu",
                coords: Mapping[str, Mapping[str, Sequence[Any]]] | None = None
                ) -> CounterGenerator:
        self = super().__new__(cls, "cpu")  # type: ignore[call-arg]
        self.manual_seed(int(seed) % (2**63))
        return self

    def __init__(self, seed: int, device: str = "cpu",
                 coords: Mapping[str, Mapping[str, Sequence[Any]]] | None = None) -> None:
        # Not `seed`: torch.Generator has a method of that name.
        self.case_seed = int(seed)
        self.target_device = device
        self.calls = 0
        self.coords = coords or {}
        self.fields: list[tuple[str, str, tuple[int, ...]]] | None = None
        self._label, self._key = "", 0

    def stream(self, name: str | None = None) -> int:
        """The key of the next input: from `name` when given, else from the call count."""
        self.calls += 1
        label = name if name is not None else f"#{self.calls}"
        self._label = label
        self._key = key_of(self.case_seed % (1 << 64), label)
        return self._key

    def field(self, key: int, shape: Sequence[int]) -> Field:
        """A `Field` over `shape` on this generator's device, at the coordinates given for
        it."""
        if self.fields is None and not self.coords:  # a version-2 case: nothing to look up
            return make_field(key, shape, self.target_device)
        sub = str(key ^ self._key)
        shape = tuple(int(s) for s in shape)
        if self.fields is not None:
            self.fields.append((self._label, sub, shape))
        coords = self.coords.get(self._label, {}).get(sub)
        try:
            return make_field(key, shape, self.target_device, coords)
        except ValueError as exc:
            raise CaseError(f"case field coords, input {self._label!r}, field {sub}: {exc}; "
                            "give one int or list per axis, lists as long as the axis") from None

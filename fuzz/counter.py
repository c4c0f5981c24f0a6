"""A counter-based generator: random bits as a hash of (seed, stream, coordinates, draw).

Nothing here keeps state between elements, so an element's bits do not depend on the tensor's
other dimensions: drop a row and every other row keeps its values. Hashes are 32-bit values
held in int64 tensors (multiplications wrap and are masked back to 32 bits), computed with
integer ops only; the maps to floats use exact conversions, a lookup table and correctly
rounded float64 arithmetic. The same call therefore gives the same bits on every device.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

import torch

M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9
# Normal quantiles at (i + 0.5) / 65537: the inverse-CDF table for `Field.normal`.
_TABLE_BITS = 16


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
def _normal_table(device: str) -> torch.Tensor:
    n = 1 << _TABLE_BITS
    p = (torch.arange(n + 1, dtype=torch.float64) + 0.5) / (n + 1)
    # Computed once on the CPU, then copied: the table is data, the same bits on every device.
    return torch.special.ndtri(p).to(device)


class Field:
    """The hashes of one tensor's coordinates under one key: `bits(draw)` gives independent
    32-bit values per element for each draw number; `uniform`, `normal` map them to floats.
    `shape` may hold 1 in place of a dimension to draw one value per slice (e.g. per row)."""

    def __init__(self, key: int, shape: Sequence[int], device: str = "cpu") -> None:
        self.key = key
        self.shape = tuple(int(s) for s in shape)
        self.device = device
        base = torch.full((), key, dtype=torch.int64, device=device)
        for axis, size in enumerate(self.shape):
            coords = torch.arange(size, dtype=torch.int64, device=device)
            coords.add_(mix(key ^ ((axis + 1) * _GOLDEN))).bitwise_and_(M32)
            view = [1] * len(self.shape)
            view[axis] = size
            base = base ^ mix_tensor(coords).view(view)
        self.base = base.expand(self.shape).contiguous() if self.shape else base

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
        quantiles: the high 16 bits of one hash pick the interval, its low 16 bits and a second
        hash (draw + 1 is used too) give 48 bits of position inside it."""
        table = _normal_table(self.device)
        h = self.bits(draw)
        index = h >> 16
        low = table[index]
        high = table[index + 1]
        frac = ((h & 0xFFFF).to(torch.float64) * (2.0 ** 32)
                + self.bits(draw + 1).to(torch.float64)) * (2.0 ** -48)
        return low + (high - low) * frac


def pow2(exponent: torch.Tensor) -> torch.Tensor:
    """2.0 ** exponent for an int64 tensor in [-1022, 1023], built from the bit pattern (exact
    on every device)."""
    return ((exponent + 1023) << 52).view(torch.float64)


class CounterGenerator(torch.Generator):
    """The generator a version-2 case is built with. Each call of `stream(name)` gives the key
    of one input; without a name, inputs are keyed by call order. It is also a CPU
    `torch.Generator` seeded with the case's seed, so a target that draws with
    `torch.randn(..., generator=gen)` still runs (sequentially, without position stability).
    `device`: where the tensors it builds live (`target_device`)."""

    def __new__(cls, seed: int, device: str = "cpu") -> CounterGenerator:
        self = super().__new__(cls, "cpu")
        self.manual_seed(int(seed) % (2**63))
        return self

    def __init__(self, seed: int, device: str = "cpu") -> None:
        self.seed = int(seed)
        self.target_device = device
        self.calls = 0

    def stream(self, name: str | None = None) -> int:
        """The key of the next input: from `name` when given, else from the call count."""
        self.calls += 1
        label = name if name is not None else f"#{self.calls}"
        return key_of(self.seed % (1 << 64), label)

    def field(self, key: int, shape: Sequence[int]) -> Field:
        """A `Field` over `shape` on this generator's device."""
        return Field(key, shape, self.target_device)

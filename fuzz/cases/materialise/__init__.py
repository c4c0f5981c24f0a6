"""Case -> tensors.

Two generators, chosen by the case's "materialise" field:

- 3: version 2 with the case field "coords", the coordinates of each axis of an input's
  fields (`kfuzz.cases.materialise.counter.CounterGenerator`). The shrinker writes it when it
  drops heads, rows
  or cache rows other than the last: the elements left are those of the case before, bit for
  bit, wherever they sat. A case without coords is never stamped 3, so older readers of
  version 2 cases see no change.
- 2 (every case the search draws now): *position-stable* values. Each element is a function of
  (case seed, input, the element's coordinates) through a counter-based integer hash, so that
  removing a row, a head or a cache row leaves every surviving element bit-identical and a
  shrunk case still shows the failure it was shrunk from. The mapping from hash bits to values
  uses only integer ops, table lookups and correctly rounded float64 arithmetic (+, -, *, /),
  so the same case gives the same bits on a CPU and on a GPU (`device=`).
- absent or 1 (cases stored before version 2): a `torch.Generator` seeded with the case's seed,
  drawn sequentially; kept unchanged so every stored case replays bit for bit.

Generation order inside a target's `inputs` function is part of a version-1 case's meaning; in
version 2 an input's values depend on its name (`name=`) or, without one, on the order of the
calls, never on the other inputs' sizes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from kfuzz.cases.materialise import v1 as materialise_v1
from kfuzz.cases.materialise.counter import CounterGenerator, Field, pow2
from kfuzz.errors import CaseError

VERSION_KEY = "materialise"
VERSION = 2
# The version of a case with coordinates, and its field.
COORDS_VERSION = 3
COORDS_KEY = "coords"

DTYPE_NAMES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "int64": torch.int64,
    "int32": torch.int32,
}


def dtype_of(name: str) -> torch.dtype:
    """The torch dtype called `name` ("bfloat16", ...). Raises CaseError for unknown names."""
    try:
        return DTYPE_NAMES[name]
    except (KeyError, TypeError):
        raise CaseError(
            f"unknown dtype {name!r}; choose from {', '.join(DTYPE_NAMES)}"
        ) from None


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with `seed` (any int; reduced modulo 2**63)."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise CaseError(f"seed {seed!r} is not an integer")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed % (2**63))
    return gen


def generator_for(case: Mapping[str, Any], device: str = "cpu") -> torch.Generator:
    """The generator a case's inputs are built with: a `CounterGenerator` (position-stable,
    building on `device`) for version-2 cases, the sequential CPU generator of
    `kfuzz.cases.materialise.v1` for cases without a version. Raises CaseError for a bad seed or an
    unknown version."""
    seed = case.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise CaseError(f"seed {seed!r} is not an integer")
    version = case.get(VERSION_KEY, 1)
    if COORDS_KEY in case and version != COORDS_VERSION:
        raise CaseError(f"case field {COORDS_KEY} needs {VERSION_KEY}={COORDS_VERSION}, "
                        f"got {version!r}; set {VERSION_KEY} to {COORDS_VERSION}")
    if version == 1:
        return generator(seed)
    if version == VERSION:
        return CounterGenerator(seed, device)
    if version == COORDS_VERSION:
        return CounterGenerator(seed, device, coords_of(case))
    raise CaseError(
        f"case field {VERSION_KEY}={version!r} is unknown; this kfuzz builds versions 1 to "
        f"{COORDS_VERSION} (upgrade kfuzz to replay newer cases)"
    )


def coords_of(case: Mapping[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """The case's coordinates ({input: {field: [per axis, a first coordinate or a list of
    coordinates]}}), checked: names are strings, coordinates non-negative integers. Raises
    CaseError naming the bad entry."""
    raw = case.get(COORDS_KEY, {})
    if not isinstance(raw, Mapping):
        raise CaseError(f"case field {COORDS_KEY} is {raw!r}, not a mapping of inputs to fields")
    out: dict[str, dict[str, list[Any]]] = {}
    for label, fields in raw.items():
        if not isinstance(label, str) or not isinstance(fields, Mapping):
            raise CaseError(f"case field {COORDS_KEY}: {label!r}: {fields!r} is not a mapping "
                            "of fields to coordinates")
        out[label] = {}
        for sub, axes in fields.items():
            if not (isinstance(sub, str) and isinstance(axes, list)
                    and all(_coordinate(a) or (isinstance(a, list) and all(map(_coordinate, a)))
                            for a in axes)):
                raise CaseError(f"case field {COORDS_KEY}: {label!r}, field {sub!r}: {axes!r} "
                                "is not a list of, per axis, an integer >= 0 or a list of them")
            out[label][sub] = list(axes)
    return out


def _coordinate(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def stamp(case: Mapping[str, Any]) -> dict[str, Any]:
    """`case` marked to be built by the current (position-stable) materialisation."""
    return {**case, VERSION_KEY: VERSION}


def _field(dist: Mapping[str, Any], key: str) -> Any:
    try:
        return dist[key]
    except KeyError:
        raise CaseError(f"distribution {dict(dist)!r} lacks {key!r}") from None


# Draw numbers of one input's Field: each use of the element hashes has its own, so that adding
# a modifier never changes the base values.
_BASE, _HIT, _SIGN, _DOMINANT, _TIE, _TIE_NUDGE, _EDGE, _NAN = 0, 2, 3, 4, 5, 6, 7, 10
# Per-row draws (a second Field over the leading dimensions).
_ROW_HIT, _ROW_GAP, _ROW_EDGE = 0, 1, 2
_ROWS_KEY = 0x5BD1E995
# Optional keys of a distribution: the value regimes, applied in this order after the base kind.
MODIFIERS = ("row_gap", "dominant", "shift", "ties", "edge_rows", "nonfinite")
_MODIFIER_KEYS = frozenset(MODIFIERS)
_PRECISION = {torch.bfloat16: 8, torch.float16: 11, torch.float32: 24, torch.float64: 53}


def values(
    gen: torch.Generator, shape: Sequence[int], dtype: torch.dtype, dist: Mapping[str, Any],
    *, name: str | None = None,
) -> torch.Tensor:
    """A tensor of `shape` and `dtype` drawn from the distribution description `dist` (see
    `kfuzz.cases.strategies.distributions`). Values are drawn in float64, then rounded to `dtype`
    (saturating to +/-Inf past its range, as a cast would). With a `CounterGenerator` each
    element is a function of the seed, `name` (or the call order) and its coordinates.
    Raises CaseError for a malformed description."""
    if not isinstance(dist, Mapping):
        raise CaseError(f"distribution {dist!r} is not a mapping")
    if not isinstance(gen, CounterGenerator):
        extra = sorted(set(MODIFIERS[:-1]) & set(dist))
        if extra:
            raise CaseError(f"distribution modifiers {extra} need a version-{VERSION} case")
        return materialise_v1.values(gen, shape, dtype, dist)
    shape = tuple(map(int, shape))
    key = gen.stream(name)
    f = gen.field(key, shape)
    rows = _Rows(gen, key, shape)
    kind = _field(dist, "kind")
    if kind == "normal":
        x = f.normal(_BASE)
        scale = float(_field(dist, "scale"))
        if scale != 1.0:  # x * 1.0 is x, bit for bit: skip the op
            x = x * scale
    elif kind == "uniform":
        low, high = float(_field(dist, "low")), float(_field(dist, "high"))
        x = low + (high - low) * f.uniform(_BASE)
    elif kind == "log_uniform":
        lo, hi = float(_field(dist, "min_exp")), float(_field(dist, "max_exp"))
        # A uniform binade, then a uniform mantissa in it: log-uniform up to a piecewise-linear
        # mantissa, and exact on every device (no exp2).
        t = lo + (hi - lo) * f.uniform(_BASE)
        e = torch.floor(t)
        x = (1.0 + (t - e)) * pow2(e.to(torch.int64).clamp_(-1022, 1023))
        if dist.get("signed", True):
            x = x * f.signs(_SIGN)
    elif kind == "outliers":
        x = f.normal(_BASE) * float(_field(dist, "scale"))
        hit = f.uniform(_HIT) < float(_field(dist, "fraction"))
        x = torch.where(hit, float(_field(dist, "magnitude")) * f.signs(_SIGN), x)
    elif kind == "constant_rows":
        x = f.normal(_BASE)
        if shape and shape[-1] > 0:
            hit = rows.uniform(_ROW_HIT) < float(_field(dist, "fraction"))
            x = torch.where(hit, float(_field(dist, "value")), x)
    elif kind == "edge":
        x = _edge(f, dtype, _field(dist, "edge"), int(dist.get("spread", 0)), _BASE)
    else:
        raise CaseError(f"unknown distribution kind {kind!r} in {dict(dist)!r}")
    if not _MODIFIER_KEYS.isdisjoint(dist):
        x = _apply_modifiers(x, f, rows, shape, dtype, dist)
    return x.to(dtype)


class _Rows:
    """The per-row Field of an input (over its leading dimensions), built on first use."""

    def __init__(self, gen: CounterGenerator, key: int, shape: tuple[int, ...]) -> None:
        self.gen, self.key, self.shape = gen, key, shape
        self._field: Field | None = None

    def __getattr__(self, name: str) -> Any:
        if self._field is None:
            self._field = self.gen.field(self.key ^ _ROWS_KEY, self.shape[:-1] + (1,))
        return getattr(self._field, name)


def _edge(f: Field, dtype: torch.dtype, edge: str, spread: int, draw: int) -> torch.Tensor:
    if not dtype.is_floating_point:
        raise CaseError(f"edge distributions need a floating dtype, got {dtype}")
    info = torch.finfo(dtype)
    u = f.uniform(draw)
    steps = f.below(draw + 1, max(spread, 0) + 1)
    if edge == "overflow":
        # Within 2**(spread + 1) of the largest finite value, at most that value.
        mag = info.max * (1.0 - 0.5 * u) * pow2(-steps)
    elif edge == "underflow":
        # From the smallest normal up to 2**(spread + 1) above it.
        mag = info.tiny * (1.0 + u) * pow2(steps)
    elif edge == "subnormal":
        mag = info.tiny * u
    else:
        raise CaseError(f"unknown edge {edge!r}; choose from overflow, underflow, subnormal")
    return mag * f.signs(draw + 2)


def _apply_modifiers(
    x: torch.Tensor, f: Field, rows: _Rows, shape: tuple[int, ...], dtype: torch.dtype,
    dist: Mapping[str, Any],
) -> torch.Tensor:
    """The value regimes of `dist` (see `kfuzz.cases.strategies.regimes`), each optional."""
    if dist.get("row_gap"):
        # Rows far apart: each row shifted by its own offset in [-gap, gap].
        x = x + (2.0 * rows.uniform(_ROW_GAP) - 1.0) * float(dist["row_gap"])
    if dist.get("dominant") and shape and shape[-1] > 0:
        # One element per row far above the rest (one dominant score): the one with the largest
        # hash in its row, which stays the same element when other columns are cut away.
        score = f.bits(_DOMINANT)
        top = score == score.amax(dim=-1, keepdim=True)
        x = x + top.to(torch.float64) * float(dist["dominant"])
    if dist.get("shift"):
        x = x + float(dist["shift"])
    if dist.get("ties"):
        x = _ties(x, f, dtype, dtype_of(dist["ties"]))
    edge_rows = dist.get("edge_rows")
    if edge_rows:
        hit = rows.uniform(_ROW_EDGE) < float(_field(edge_rows, "fraction"))
        x = torch.where(hit, _edge(f, dtype, _field(edge_rows, "edge"), 2, _EDGE), x)
    nonfinite = dist.get("nonfinite")
    if nonfinite:
        nan, inf = float(nonfinite.get("nan", 0)), float(nonfinite.get("inf", 0))
        u = f.uniform(_NAN)
        x = torch.where(u < nan, math.nan, x)
        x = torch.where((u >= nan) & (u < nan + inf), math.inf * f.signs(_NAN + 1), x)
    return x


def _ties(x: torch.Tensor, f: Field, dtype: torch.dtype, tie_dtype: torch.dtype) -> torch.Tensor:
    """Half of the elements moved onto a rounding tie of `tie_dtype` (the midpoint of the two
    `tie_dtype` values around them), or one unit of `dtype` below or above it."""
    if tie_dtype not in _PRECISION or dtype not in _PRECISION:
        raise CaseError(f"ties need floating dtypes, got {tie_dtype} for a {dtype} input")
    finite = torch.isfinite(x) & (x != 0)
    r = x.to(tie_dtype).to(torch.float64)
    _, exp = torch.frexp(torch.where(finite, r, 1.0))
    exp = exp.to(torch.int64)
    half_step = pow2((exp - _PRECISION[tie_dtype] - 1).clamp_(-1022, 1023))
    mid = r + torch.where(r < 0, -half_step, half_step)
    nudge = (f.below(_TIE_NUDGE, 3) - 1).to(torch.float64)
    mid = mid + nudge * pow2((exp - _PRECISION[dtype]).clamp_(-1022, 1023))
    pick = finite & torch.isfinite(mid) & (f.uniform(_TIE) < 0.5)
    return torch.where(pick, mid, x)


def integers(
    gen: torch.Generator, shape: Sequence[int], low: int, high: int, *, name: str | None = None
) -> torch.Tensor:
    """An int64 tensor of `shape`, uniform in [low, high) (high > low). Position-stable with a
    `CounterGenerator`; `torch.randint` with a sequential generator."""
    if high <= low:
        raise CaseError(f"integers need high > low, got [{low}, {high})")
    shape = tuple(int(s) for s in shape)
    if not isinstance(gen, CounterGenerator):
        return torch.randint(low, high, shape, generator=gen)
    return low + gen.field(gen.stream(name), shape).below(_BASE, high - low)


def sparse_indices(
    gen: torch.Generator, tokens: int, spec: Mapping[str, Any], *, name: str | None = None
) -> torch.Tensor:
    """A [tokens, k] int32 index tensor from a `kfuzz.cases.strategies.sparse_index_sets` description.

    Per token: the first min(window, valid) slots are the most recent rows (n_rows-1 down),
    the next valid slots scattered rows (drawn without replacement unless `duplicates`), the
    rest -1. With `out_of_range`, about one valid slot in eight names a row >= n_rows. With a
    `CounterGenerator` a token's indices depend on the token and the row or slot numbers only:
    removing a token, a slot or a cache row leaves the others' choices in place.
    Raises CaseError for a malformed description."""
    if not isinstance(gen, CounterGenerator):
        return materialise_v1.sparse_indices(gen, tokens, spec)
    n, k, n_valid, window = materialise_v1.index_spec(spec)
    key = gen.stream(name)
    duplicates = bool(spec.get("duplicates"))
    if spec.get("ragged"):
        lengths = gen.field(key ^ 1, (tokens,)).below(_BASE, n_valid + 1).tolist()
    else:
        lengths = [n_valid] * tokens
    if duplicates:
        picks = gen.field(key ^ 2, (tokens, k)).below(_BASE, n)
    else:
        # Each token ranks every cache row by a hash of (token, row); the scattered rows are
        # the best-ranked rows outside the window.
        scores = gen.field(key ^ 3, (tokens, n)).bits(_BASE)
        picks = torch.sort(scores, dim=1, stable=True).indices
    far = gen.field(key ^ 4, (tokens, k)).uniform(_BASE) < 0.125
    out = torch.full((tokens, k), -1, dtype=torch.int32, device=gen.target_device)
    for t, valid in enumerate(lengths):
        valid = valid if duplicates else min(valid, n)
        w = min(window, valid, n)
        recent = torch.arange(n - 1, n - 1 - w, -1, dtype=torch.int64, device=gen.target_device)
        rest = valid - w
        if duplicates:
            scattered = picks[t, w:w + rest]
        else:
            row_picks = picks[t]
            scattered = row_picks[row_picks < n - w][:rest]
        row = torch.cat([recent, scattered])
        if spec.get("sorted"):
            row = torch.sort(row).values
        if spec.get("out_of_range") and row.numel():
            row = torch.where(far[t, : row.numel()], row + n, row)
        out[t, : row.numel()] = row.to(torch.int32)
    return out


def to_device(tensors: Mapping[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    """The same tensors moved to `device` (the tensor itself where it already is)."""
    where = torch.device(device)
    return {name: t if t.device == where else t.to(where) for name, t in tensors.items()}

"""The outcome of one comparison: `Metrics`, its stored form (`to_dict`, strictly JSON-safe)
and how a stored record is read back (`from_dict`).

`kfuzz.judge.compare` fills it in; stored findings and replays keep its `to_dict()`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kfuzz.judge.comparator import Comparator

_FLOAT_FIELDS = (
    "mismatch_ratio", "worst_over_allowed", "max_abs", "max_rel", "rel_l2", "cosine", "max_ulp",
)
_INDEX_FIELDS = ("max_abs_index", "max_rel_index", "worst_index")
_INT_FIELDS = (
    "mismatches",
    "numel",
    "nonfinite_actual",
    "nonfinite_expected",
    "nonfinite_mismatches",
)
# What a verdict needs, and all that a summary record (`compare(..., full=False)` on a passing
# output) holds.
SUMMARY_KEYS = (
    "mismatches", "numel", "mismatch_ratio", "passed", "worst_over_allowed", "nonfinite_actual",
    "nonfinite_expected", "nonfinite_mismatches", "comparator", "message",
)
# A full record: the summary plus the statistics and worst points a stored finding shows.
FULL_KEYS = SUMMARY_KEYS + (
    "max_abs", "max_abs_index", "max_rel", "max_rel_index", "worst_index", "rel_l2", "cosine",
    "max_ulp", "worst_points",
)
# Keys added after corpora were first written: a stored record may lack them.
_ADDED_KEYS = ("worst_over_allowed",)
_POINT_VALUES = ("actual", "expected", "diff", "allowed")
_NONFINITE_NAMES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode_point_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _encode_metric(value: float | None) -> float | str | None:
    # A NaN metric carries no information (None: undefined); an infinite one does (overflow).
    if value is not None and math.isnan(value):
        return None
    return _encode_point_value(None if value is None else float(value))


def _decode_number(value: Any) -> Any:
    if isinstance(value, str):
        if value not in _NONFINITE_NAMES:
            raise ValueError(f"expected a number or one of 'nan', 'inf', '-inf', got {value!r}")
        return _NONFINITE_NAMES[value]
    return value


def _encode_field(name: str, value: Any) -> Any:
    """One Metrics field as strictly JSON-safe data."""
    if name in _FLOAT_FIELDS:
        return _encode_metric(value)
    if name in _INT_FIELDS:
        return int(value)
    if name in _INDEX_FIELDS:
        return None if value is None else [int(i) for i in value]
    if name in ("passed", "complete"):
        return bool(value)
    if name == "comparator":
        return dict(value)
    if name == "worst_points":
        return [
            {
                "index": [int(i) for i in point["index"]],
                **{key: _encode_point_value(point[key]) for key in _POINT_VALUES},
            }
            for point in value
        ]
    return value


@dataclass
class Metrics(Mapping[str, Any]):
    """The outcome of one comparison.

    Attributes:
        mismatches, numel, mismatch_ratio: bad elements, all elements, and their ratio.
        passed: mismatch_ratio <= the comparator's max_ratio.
        worst_over_allowed: the greatest |a - e| / allowed over the elements: the closest call.
            allowed is atol + rtol * |e| (allclose) or `ulp` spacings of the output dtype at |e|
            (ulp mode). Above 1 exactly when some element is outside its bound. In exact mode
            nothing is allowed and the value is the greatest ULP distance in the output dtype
            (0 when every element is equal; any value above 0 is outside). A non-finite
            mismatch counts as inf. None only in a record stored before this metric existed.
        max_abs, max_abs_index: greatest |a - e| over elements finite on both sides, and where.
        max_rel, max_rel_index: greatest |a - e| / |e| over those with e != 0, and where.
        worst_index: the element with the greatest excess |a - e| - allowed, a non-finite
            mismatch first; the element nearest its bound when none is bad.
        rel_l2: ||a - e||_2 / ||e||_2 over finite pairs; cosine: their cosine similarity.
        nonfinite_actual: elements NaN/Inf in actual where expected is finite;
            nonfinite_expected: the converse; nonfinite_mismatches: non-finite elements
            (either side) that the other side does not match.
        max_ulp: greatest distance in units in the last place of a floating output dtype.
        comparator: the resolved comparator, as its to_dict().
        worst_points: up to `worst` bad elements, worst first, each
            {index, actual, expected, diff, allowed}; expected is the value compared against.
        message: a torch.testing-style report.
        complete: False for a summary (`compare(..., full=False)` on a passing output): the
            fields from max_abs on were not computed and are None (worst_points empty).

    Undefined numbers (no finite pair, zero norm) are None. Indices are lists of ints.

    A Metrics object is also a read-only mapping of its serialised form: `m["mismatch_ratio"]`,
    `m.get("max_abs")`, `dict(m)` give what `to_dict()` holds, so code written against the
    stored dicts reads live metrics unchanged. A summary has only SUMMARY_KEYS and "complete".
    """

    mismatches: int
    numel: int
    mismatch_ratio: float
    passed: bool
    worst_over_allowed: float | None
    nonfinite_actual: int
    nonfinite_expected: int
    nonfinite_mismatches: int
    comparator: dict[str, Any]
    message: str
    max_abs: float | None = None
    max_abs_index: list[int] | None = None
    max_rel: float | None = None
    max_rel_index: list[int] | None = None
    worst_index: list[int] | None = None
    rel_l2: float | None = None
    cosine: float | None = None
    max_ulp: float | None = None
    worst_points: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True

    def _keys(self) -> tuple[str, ...]:
        return FULL_KEYS if self.complete else SUMMARY_KEYS + ("complete",)

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return _encode_field(key, getattr(self, key))

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def to_dict(self) -> dict[str, Any]:
        """Return the metrics as strictly JSON-safe data.

        Returns:
            A dict that `json.dumps(..., allow_nan=False)` accepts: undefined numbers are None,
            infinite metrics and non-finite point values are the strings "nan", "inf", "-inf".
            A full record has FULL_KEYS; a summary has SUMMARY_KEYS and "complete": False.
        """
        return {key: _encode_field(key, getattr(self, key)) for key in self._keys()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Metrics:
        """Rebuild metrics from `to_dict()` output (for example a stored finding).

        Args:
            d: a mapping with the keys `to_dict()` writes; a record stored before
                worst_over_allowed existed may lack it (it reads as None).

        Returns:
            The metrics, with "nan"/"inf"/"-inf" strings turned back into floats.

        Raises:
            ValueError: on a missing or unknown key, or a string that is not a non-finite name.
            ComparatorError: when the stored comparator is not valid.
        """
        complete = d.get("complete", True)
        if not isinstance(complete, bool):
            raise ValueError(f"metrics key 'complete' must be true or false, got {complete!r}")
        known = FULL_KEYS if complete else SUMMARY_KEYS
        missing = [name for name in known if name not in d and name not in _ADDED_KEYS]
        if missing:
            raise ValueError(f"metrics record lacks key {missing[0]!r}")
        unknown = [key for key in d if key not in known and key != "complete"]
        if unknown:
            raise ValueError(f"unknown metrics key {unknown[0]!r}; known keys: {', '.join(known)}")
        values: dict[str, Any] = {name: d.get(name) for name in known}
        for name in _FLOAT_FIELDS:
            if name in values:
                value = _decode_number(values[name])
                values[name] = None if value is None else float(value)
        for name in _INDEX_FIELDS:
            if name in values:
                values[name] = None if values[name] is None else [int(i) for i in values[name]]
        values["comparator"] = Comparator.from_dict(values["comparator"]).to_dict()
        if "worst_points" in values:
            values["worst_points"] = [
                {
                    "index": [int(i) for i in point["index"]],
                    **{key: _decode_number(point[key]) for key in _POINT_VALUES},
                }
                for point in values["worst_points"]
            ]
        return cls(**values, complete=complete)

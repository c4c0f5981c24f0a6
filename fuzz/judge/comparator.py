"""A comparator: the settings that judge one output against its reference (mode, tolerances,
mismatch budget), validated when built, stored as plain JSON.

Kept apart from `kfuzz.judge.compare` (which computes the comparison with torch) so that reading
and describing stored comparators, as the corpus commands do, imports no torch: the tolerance
table (`kfuzz.judge.tolerance`) is imported only when an output's dtype is resolved.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

MODES = ("allclose", "exact", "ulp")
# The ulp-mode bound when none is given.
DEFAULT_ULP = 1.0


class ComparatorError(ValueError):
    """Comparator settings that cannot be used; the message names the setting and the fix."""


@functools.lru_cache(maxsize=256)
def _resolved(comparator: Comparator, dtype: torch.dtype) -> Comparator:
    # Comparators are frozen and hashable: every case of a run resolves the same few.
    return comparator._resolve(dtype)


def format_setting(value: float) -> str:
    """Format a setting as a user would type it: 0 rather than 0.0, 1e-05 as Python writes it."""
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


def _setting_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ComparatorError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


@dataclass(frozen=True)
class Comparator:
    """How one output is judged against its reference.

    Attributes:
        mode: "allclose" (bad when |a - e| > atol + rtol * |e|), "exact" (atol = rtol = 0),
            or "ulp" (bad when more than `ulp` units in the last place of the output dtype apart).
        atol, rtol: allclose bounds, given together; None takes both from
            `kfuzz.judge.tolerance.TOLERANCES` for the output dtype.
        ulp: the ulp-mode bound; None means 1.
        max_ratio: the verdict fails when more than this fraction of the elements is bad.
        round_expected: round a floating reference to the floating output dtype before comparing,
            so that a correctly rounded kernel matches exactly.

    Raises:
        ComparatorError: on construction, for settings that cannot be used.
    """

    mode: str = "allclose"
    atol: float | None = None
    rtol: float | None = None
    ulp: float | None = None
    max_ratio: float = 0.0
    round_expected: bool = True

    def __post_init__(self) -> None:
        """Validate the settings and store numbers as floats.

        Raises:
            ComparatorError: naming the offending setting and how to fix it.
        """
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise ComparatorError(f"unknown comparison mode {self.mode!r}; use one of: {', '.join(MODES)}")
        for name in ("atol", "rtol", "ulp"):
            value = getattr(self, name)
            if value is None:
                continue
            number = _setting_number(name, value)
            if not (math.isfinite(number) and number >= 0):
                raise ComparatorError(f"{name} must be a finite number >= 0, got {value!r}")
            # Plain floats keep to_dict() identical whether a caller passed 0 or 0.0.
            object.__setattr__(self, name, number)
        ratio = _setting_number("max_ratio", self.max_ratio)
        if not 0.0 <= ratio <= 1.0:
            raise ComparatorError(
                f"max_ratio must be a fraction in [0, 1] (0.005 allows 0.5% of elements), "
                f"got {self.max_ratio!r}"
            )
        object.__setattr__(self, "max_ratio", ratio)
        if not isinstance(self.round_expected, bool):
            raise ComparatorError(f"round_expected must be True or False, got {self.round_expected!r}")

        given = [
            f"{name}={format_setting(value)}"
            for name, value in (("atol", self.atol), ("rtol", self.rtol))
            if value is not None
        ]
        if self.mode == "exact":
            nonzero = [
                f"{name}={format_setting(value)}"
                for name, value in (("atol", self.atol), ("rtol", self.rtol))
                if value
            ]
            if nonzero:
                raise ComparatorError(
                    f"exact mode means atol = rtol = 0 (got {', '.join(nonzero)}); "
                    "use --compare allclose to set tolerances"
                )
        if self.ulp is not None and self.mode != "ulp":
            raise ComparatorError(
                f"ulp is only used in ulp mode (mode is {self.mode!r}); pass --compare ulp with --ulp N"
            )
        if self.mode == "ulp" and given:
            raise ComparatorError(
                f"ulp mode takes no atol or rtol (got {', '.join(given)}); pass --ulp N, "
                "or --compare allclose with --atol and --rtol"
            )
        if self.mode == "allclose":
            if self.rtol is not None and self.atol is None:
                raise ComparatorError("rtol given without atol; pass both --atol and --rtol")
            if self.atol is not None and self.rtol is None:
                raise ComparatorError("atol given without rtol; pass both --atol and --rtol")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-able dict with every field present.

        Returns:
            A dict keyed by field name; unset tolerances are None.
        """
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Comparator:
        """Build a comparator from a dict such as `to_dict()` returns; absent keys take defaults.

        Args:
            d: a mapping of field names to values.

        Returns:
            The validated comparator.

        Raises:
            ComparatorError: when `d` is not a mapping, has an unknown key, or holds a bad value.
        """
        if not isinstance(d, Mapping):
            raise ComparatorError(f"a comparator must be a mapping, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = [key for key in d if key not in known]
        if unknown:
            raise ComparatorError(
                f"unknown comparator key {unknown[0]!r}; known keys: {', '.join(sorted(known))}"
            )
        return cls(**d)

    def resolved(self, dtype: torch.dtype) -> Comparator:
        """Fill in the defaults for an output dtype.

        Allclose takes atol/rtol from `kfuzz.judge.tolerance.TOLERANCES` (a floating dtype missing from
        the table takes float64's row); exact gets atol = rtol = 0; ulp gets ulp = 1 when unset.
        Integer and bool outputs become exact whatever was asked, since they have no rounding to
        tolerate.

        Args:
            dtype: the dtype of the kernel's output.

        Returns:
            A comparator with no unset bound for its mode.
        """
        return _resolved(self, dtype)

    def _resolve(self, dtype: torch.dtype) -> Comparator:
        if not dtype.is_floating_point:
            return replace(self, mode="exact", atol=0.0, rtol=0.0, ulp=None)
        if self.mode == "exact":
            return replace(self, atol=0.0, rtol=0.0)
        if self.mode == "ulp":
            return replace(self, ulp=DEFAULT_ULP if self.ulp is None else self.ulp)
        if self.atol is None:  # validation guarantees rtol is unset too
            # Only an output's dtype gets here, so torch is loaded already.
            from kfuzz.judge.tolerance import tolerance

            tol = tolerance(dtype)
            return replace(self, atol=tol.atol, rtol=tol.rtol)
        return self

    def describe(self) -> str:
        """Summarise the settings in one line.

        Returns:
            For example "allclose(atol=1e-05, rtol=0.016, max_ratio=0)", "exact(max_ratio=0.005)"
            or "ulp(2, max_ratio=0)"; unset allclose bounds read "auto".
        """
        tail = f"max_ratio={format_setting(self.max_ratio)}"
        if not self.round_expected:
            tail += ", round_expected=False"
        if self.mode == "exact":
            return f"exact({tail})"
        if self.mode == "ulp":
            return f"ulp({format_setting(DEFAULT_ULP if self.ulp is None else self.ulp)}, {tail})"
        atol = "auto" if self.atol is None else format_setting(self.atol)
        rtol = "auto" if self.rtol is None else format_setting(self.rtol)
        return f"allclose(atol={atol}, rtol={rtol}, {tail})"


def with_overrides(default: Comparator, overrides: Mapping[str, Any] | None) -> Comparator:
    """`default` with the fields in `overrides` replaced (e.g. {"max_ratio": 0.005}).
    A new mode drops the default's tolerances, which belong to the old mode.
    Raises ComparatorError for a bad combination."""
    if not overrides:
        return default
    try:
        key = (default, tuple(sorted(overrides.items())))
        hash(key)
    except TypeError:  # an unhashable value: build it (and let validation say what is wrong)
        return _with_overrides(default, overrides)
    found = _OVERRIDDEN.get(key)
    if found is None:
        if len(_OVERRIDDEN) >= 256:
            _OVERRIDDEN.clear()
        found = _OVERRIDDEN[key] = _with_overrides(default, overrides)
    return found


# Comparators with overrides already built and validated: a campaign builds the same one for
# every case.
_OVERRIDDEN: dict[tuple[Comparator, tuple[tuple[str, Any], ...]], Comparator] = {}


def _with_overrides(default: Comparator, overrides: Mapping[str, Any]) -> Comparator:
    base = default.to_dict()
    if "mode" in overrides and overrides["mode"] != base.get("mode"):
        for key in ("atol", "rtol", "ulp"):
            base.pop(key, None)
    return Comparator.from_dict({**base, **overrides})

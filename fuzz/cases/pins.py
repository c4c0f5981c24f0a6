"""Pins: case fields held at fixed values while searching and shrinking (`--pin FIELD=VALUE`).

A pin may also hold a field within a few values (`OneOf`) instead of at one: a kernel that
implements only some dtypes (`variant(fn, dtypes=[...])`) gets its "dtype" field held within
them (`dtype_pin`), so that no case of another dtype is drawn for it; a drawn value outside
them is replaced by one of them (no draw is thrown away).

A pin is checked against its target before any search, so that a typo, a shape of the wrong
rank, a dtype the target does not offer or a size that would allocate gigabytes is one line
naming the pin, not an exception (or an out-of-memory kill) somewhere inside a campaign. The
target's own strategy is the judge: a pin must look like what the strategy draws (same fields,
same kinds of value, same list lengths, one of the few values a categorical field takes), fit
`max_numel`, and make a case the target can build.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from kfuzz.errors import OptionError
from kfuzz.targets.registry import Target, Variant

SAMPLES = 100
# A string field that takes at most this many values over the samples is categorical (a
# dtype, a mode): a pin must be one of them.
CATEGORICAL = 16
# Materialising a pinned case to check it is skipped past this many elements (the size check
# has already vouched for it).
CHECK_NUMEL = 1 << 22


@dataclass(frozen=True)
class OneOf:
    """A pin that holds a field within `values` (in the order the target offers them) rather
    than at one value. left_out: the values the target offers that it leaves out; why: who
    asked (e.g. "kernel 'ort' implements float32, float16")."""

    values: tuple[Any, ...]
    left_out: tuple[Any, ...] = ()
    why: str = ""

    def take(self, drawn: Any, case: Mapping[str, Any]) -> Any:
        """`drawn` when it is one of the values, else one of them chosen by the case's seed
        (each value as likely)."""
        if drawn in self.values:
            return drawn
        return self.values[int(case.get("seed", 0)) % len(self.values)]

    def describe(self) -> str:
        """E.g. "bfloat16 (kernel 'ort' implements float32, float16)"."""
        return f"{', '.join(map(str, self.left_out))}" + (f" ({self.why})" if self.why else "")


def apply_pins(pins: Mapping[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    """`case` with its pinned fields set: a `OneOf` field kept or replaced by one of its
    values, any other pinned field set to its value."""
    out = dict(case)
    for key, value in pins.items():
        out[key] = value.take(case.get(key), case) if isinstance(value, OneOf) else value
    return out


def holds(pins: Mapping[str, Any], case: Mapping[str, Any]) -> bool:
    """Whether every pinned field of `case` holds its pin (is one of a `OneOf`'s values)."""
    return all(case.get(k) in v.values if isinstance(v, OneOf) else case.get(k) == v
               for k, v in pins.items())


def left_out(pins: Mapping[str, Any] | None) -> dict[str, str]:
    """Field -> what its `OneOf` pin leaves out and why, for the run's summary."""
    return {k: v.describe() for k, v in (pins or {}).items() if isinstance(v, OneOf)
            and v.left_out}


def dtype_pin(target: Target, variants: Sequence[Variant], pins: Mapping[str, Any],
              max_numel: int) -> OneOf | None:
    """The pin that holds `target`'s "dtype" field within the dtypes every one of `variants`
    (the kernel, and an oracle that is a kernel variant) implements (`Variant.dtypes`); None
    when they implement every dtype the target offers, or when the user pinned the dtype.
    Raises OptionError when they implement none the target offers, or the user pinned a
    dtype one of them does not implement."""
    limited = [v for v in variants if v.dtypes is not None]
    if not limited:
        return None
    user = pins.get("dtype")
    for v in limited:
        if user is not None and user not in (v.dtypes or ()):
            raise _error("dtype", f"dtype={json.dumps(user)}",
                         f": {v.name!r} implements {', '.join(v.dtypes or ())}, not {user}")
    if user is not None:
        return None
    samples = sample_cases(target, max_numel)
    offered = list(dict.fromkeys(c["dtype"] for c in samples if isinstance(c.get("dtype"), str)))
    if not offered:
        return None
    kept = [d for d in offered if all(d in (v.dtypes or ()) for v in limited)]
    why = "; ".join(f"{v.name!r} implements {', '.join(v.dtypes or ())}" for v in limited)
    if not kept:
        raise OptionError("kernel", limited[0].name,
                          f": {why}; target {target.name!r} offers dtypes "
                          f"{', '.join(offered)}, so there is nothing to fuzz (choose another "
                          "kernel or target)")
    if len(kept) == len(offered):
        return None
    return OneOf(tuple(kept), tuple(d for d in offered if d not in kept), why)


def parse_pins(items: Sequence[str]) -> dict[str, Any]:
    """`FIELD=VALUE` strings as {field: value}. VALUE is JSON; a bare word that is not JSON
    (bfloat16) is a string. Raises OptionError for a missing `=` or malformed JSON."""
    pins: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise _error(item, item, ": expected FIELD=VALUE, e.g. --pin shape=[4,64,512]")
        try:
            pins[key] = json.loads(text)
        except json.JSONDecodeError as exc:
            if text[:1] in '[{"-.' or text[:1].isdigit():
                raise _error(key, item, f": VALUE is not valid JSON ({exc.msg} at character "
                             f"{exc.pos}); e.g. --pin shape=[4,64,512]") from None
            pins[key] = text  # a bare word such as bfloat16
    return pins


def sample_cases(target: Target, max_numel: int, count: int = SAMPLES) -> list[dict[str, Any]]:
    """`count` cases drawn from the target's strategy as the search draws them, the same ones
    every time."""
    from kfuzz.cases.materialise import stamp

    drawn: list[Any] = []

    @settings(max_examples=count, database=None, derandomize=True, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(target.cases(max_numel))
    def collect(case: Any) -> None:
        drawn.append(stamp(case) if isinstance(case, dict) else case)

    collect()
    return [c for c in drawn if isinstance(c, dict)]


def check_pins(target: Target, pins: Mapping[str, Any], max_numel: int) -> None:
    """Raises OptionError (naming the pin) unless every pin fits `target`'s cases: a known
    field, the kind of value the target draws there, a list of the same length, a value the
    target offers for a categorical string field, at most `max_numel` elements for a list of
    sizes, and a case the target can build."""
    if not pins:
        return
    samples = sample_cases(target, max_numel)
    if not samples:
        return
    fields = sorted({key for case in samples for key in case})
    for key, value in pins.items():
        text = f"{key}={json.dumps(value)}"
        if key not in fields:
            raise _error(key, key, f": cases of {target.name!r} have no field {key!r}; "
                         f"fields: {', '.join(fields)}")
        seen = [case[key] for case in samples if key in case]
        _check_value(target, key, text, value, seen, max_numel)
    _check_buildable(target, {**samples[0], **pins}, pins, max_numel)


def _error(key: str, shown: str, problem: str) -> OptionError:
    return OptionError("pins", shown, problem, flag="pin", subject=f"pins[{key!r}]")


# JSON kinds of value, bool before int (a bool is an int to isinstance).
_KINDS = ((bool, "true or false"), (int, "an integer"), (float, "a number"), (str, "a string"),
          (list, "a list"), (dict, "an object"))


def _kind(value: Any) -> str:
    return next((name for kind, name in _KINDS if isinstance(value, kind)), "null")


def _check_value(target: Target, key: str, text: str, value: Any, seen: list[Any],
                 max_numel: int) -> None:
    kinds = {_kind(v) for v in seen}
    kind = _kind(value)
    if kind == "an integer" and "a number" in kinds:
        kind = "a number"  # 0 where 1e-6 is drawn is fine
    if kind not in kinds:
        raise _error(key, text, f": {target.name!r} draws {' or '.join(sorted(kinds))} for "
                     f"{key!r} (e.g. {json.dumps(seen[0])}), not {_kind(value)}")
    if isinstance(value, list):
        lengths = sorted({len(v) for v in seen})
        if len(value) not in lengths:
            raise _error(key, text, f": {target.name!r} draws {key!r} with "
                         f"{' or '.join(map(str, lengths))} entries, not {len(value)}")
        if all(isinstance(x, int) and not isinstance(x, bool) for v in seen for x in v):
            if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in value):
                raise _error(key, text, f": {target.name!r} draws {key!r} as non-negative "
                             "integers")
            numel = math.prod(value)
            if numel > max_numel:
                raise _error(key, text, f": {numel} elements, past max_numel {max_numel} "
                             f"of {target.name!r} (raise it with --max-numel)")
    if isinstance(value, str):
        offered = sorted({v for v in seen if isinstance(v, str)})
        if len(offered) <= CATEGORICAL and value not in offered:
            raise _error(key, text, f": {target.name!r} does not offer {key} {value!r}; "
                         f"it offers {', '.join(offered)}")


def _check_buildable(target: Target, case: dict[str, Any], pins: Mapping[str, Any],
                     max_numel: int) -> None:
    from kfuzz.execute.executor import materialise_case

    shown = " ".join(f"{k}={json.dumps(v)}" for k, v in pins.items())
    key = next(iter(pins))
    try:
        size = target.size(case) if target.size is not None else None
        if size is not None and size > CHECK_NUMEL and size > max_numel:
            raise _error(key, shown, f": a pinned case has {size} input elements, past "
                         f"max_numel {max_numel} of {target.name!r}")
        if size is None or size <= CHECK_NUMEL:
            materialise_case(target, case)
            target.expect(dict(case))
    except OptionError:
        raise
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300]
        raise _error(key, shown, f": {target.name!r} cannot build a case from it "
                     f"({type(exc).__name__}: {detail})") from None

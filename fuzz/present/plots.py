"""PNG plots for `kfuzz report` (matplotlib, the optional extra `report`).

Importing this module imports matplotlib (ImportError without it; `kfuzz.present.report` turns that
into a one-line message). Figures are built with `matplotlib.figure.Figure`, not pyplot: no
global state and no display needed, and saving a PNG uses the Agg renderer, so the report
renders the same on a headless CI runner as at a desk.

Each plot has a builder that returns the figure (`error_figure`, `failure_figure`,
`trend_figure`) and a writer that saves it as a PNG (`error_histograms`, `failure_panel`,
`ratio_trend`); the PNG's Description says in words what the plot shows.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from kfuzz.present.text import percent
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    FixedLocator,
    Formatter,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)

# Integer ULP distances read best as one bar per distance; past this many, log-spaced bins.
MAX_INTEGER_ULP_BINS = 40
LOG_BINS = 40
# A log axis is padded on each side of the data by this many decades, or this share of the
# decades the data span if more, so that no bar touches the frame.
LOG_PAD = 0.15
LOG_PAD_SHARE = 0.06
# A comparator bound within this factor of the errors is drawn on the axis (which is widened
# to it); one further away would squeeze the bars to an edge, so it is named in the legend as
# off the axis.
BOUND_REACH = 100.0
MAX_TICKS = 6
# Tick values tried, coarsest first, on a log axis that spans too few decades for a tick
# per power of ten.
TICK_MANTISSAS = ((1.0,), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0, 7.0),
                  (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0))
RATIO_TICKS = (0, 0.01, 0.1, 1, 10, 100)
ERROR_KINDS = (("abs", "absolute error |a - e|"), ("rel", "relative error |a - e| / |e|"),
               ("ulp", "ULP distance"))
# What the comparator's bound on each measure is called. Allclose allows atol + rtol * |e|, so
# its atol and rtol lines each show one part of the bound, not the bound itself.
BOUND_NAMES = {"abs": "atol", "rel": "rtol", "ulp": "ulp bound"}
# Findings and replays with no mismatch ratio, in the order of the trend plot's upper strip.
UNJUDGED_ORDER = ("error", "contract", "crash", "timeout", "not run")
SOURCE_MARKERS = {"seen": "o", "replay": "x"}


def _plain(value: float) -> bool:
    return value == 0 or not math.isfinite(value) or -2 <= math.floor(math.log10(abs(value))) <= 3


def tick_text(value: float, plain: bool | None = None) -> str:
    """A short tick label: two significant digits, plain from 0.01 to 9999 ("0.015", "2.5",
    "1100"), else with a bare exponent ("1e-4", "2.5e-5", "3e6"). plain: force one form."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    exponent = math.floor(math.log10(abs(value)))
    if plain if plain is not None else -2 <= exponent <= 3:
        return f"{round(value, 1 - exponent):g}"
    mantissa = round(value / 10.0**exponent, 1)
    if abs(mantissa) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:g}e{exponent}"


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    description = getattr(fig, "kfuzz_description", "")
    fig.savefig(path, format="png", metadata={"Description": description} if description else None)
    return path


def _log_ticks(low: float, high: float) -> list[float]:
    """Round values in [low, high] for a log axis with fewer than three powers of ten on it:
    the coarsest of TICK_MANTISSAS that gives three ticks at least 1/(MAX_TICKS + 1) of the
    axis apart (so that their labels never touch), else the most such ticks found, else
    values evenly spaced in log."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    gap = math.log10(high / low) / (MAX_TICKS + 1)
    best: list[float] = []
    for mantissas in TICK_MANTISSAS:
        kept: list[float] = []
        for tick in sorted(m * 10.0**e for e in range(first, last + 1) for m in mantissas):
            if low <= tick <= high and (not kept or math.log10(tick / kept[-1]) >= gap):
                kept.append(tick)
        if len(kept) >= 3:
            return kept
        best = kept if len(kept) > len(best) else best
    if len(best) >= 2:
        return best
    return sorted({float(f"{t:.3g}") for t in np.geomspace(low, high, 5)[1:-1]})


def _powers_of_ten(low: float, high: float) -> int:
    return max(math.floor(math.log10(high) + 1e-9) - math.ceil(math.log10(low) - 1e-9) + 1, 0)


def _log_axis(axis: Any, low: float, high: float) -> None:
    """A log-scaled axis from low to high with at most MAX_TICKS short labels: powers of ten
    when three or more are on it, round values in between when not."""
    if _powers_of_ten(low, high) >= 3:
        axis.set_major_locator(LogLocator(base=10, numticks=MAX_TICKS))
        axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10)), numticks=100))
    else:
        axis.set_major_locator(FixedLocator(_log_ticks(low, high)))
        axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(ShortFormatter())
    axis.set_minor_formatter(NullFormatter())


class ShortFormatter(Formatter):
    """`tick_text` labels, in one form along an axis: plain when every tick reads well so
    ("0.5", "1", "20"), else all with exponents ("5e-3", "1e-2", "2e-2")."""

    def format_ticks(self, values: Sequence[float]) -> list[str]:
        """The labels of the ticks at `values`, all in one form."""
        plain = all(_plain(v) for v in values)
        return [tick_text(v, plain) for v in values]

    def __call__(self, x: float, pos: int | None = None) -> str:
        return tick_text(x)


def _blank(ax: Any, text: str, **style: Any) -> None:
    """An axes that holds only a sentence."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, **style)


def _histogram(ax: Any, values: np.ndarray, label: str, bound: tuple[str, float | None],
               integer: bool) -> str:
    """Draw one histogram; returns a sentence saying what it shows."""
    zeros = int(np.count_nonzero(values == 0))
    positive = values[values > 0]
    ax.set_title(f"{label}\n{values.size} elements, {zeros} exactly 0", fontsize=9)
    ax.tick_params(labelsize=8)
    if values.size == 0:
        _blank(ax, "no finite pair")
        return f"{label}: no finite pair"
    if positive.size == 0:
        _blank(ax, f"all {values.size} elements exact")
        return f"{label}: all {values.size} elements exact"
    ax.set_ylabel("elements")
    name, value = bound
    off_scale = ""
    if integer:
        top = int(math.ceil(float(values.max())))
        ax.hist(values, bins=np.arange(-0.5, top + 1.5), color="C0")
        ax.set_xlim(-0.5 - 0.05 * (top + 1), top + 0.5 + 0.05 * (top + 1))
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
        ax.set_xlabel("ULP (one bar per distance)", fontsize=8)
        summary = f"{label}: integer ULP distances 0 to {top}"
    else:
        smallest, largest = float(positive.min()), float(positive.max())
        pad = 10.0**max(LOG_PAD, LOG_PAD_SHARE * math.log10(largest / smallest))
        low, high = smallest / pad, largest * pad
        if high / low < 10.0**(4 * LOG_PAD):  # nearly one value: an axis of a decade or so
            low, high = low / pad, high * pad
        if value and low / BOUND_REACH <= value <= high * BOUND_REACH:
            low, high = min(low, value / pad), max(high, value * pad)
        elif value:
            off_scale = "left" if value < low else "right"
        # Bins of one width on the axis, LOG_BINS of them across it, centred on the data: a
        # single distinct value still gets a visible bar.
        width = math.log10(high / low) / LOG_BINS
        middle = (math.log10(smallest) + math.log10(largest)) / 2
        count = max(1, math.ceil((math.log10(largest) - math.log10(smallest)) / width + 1e-9))
        edges = np.logspace(middle - count * width / 2, middle + count * width / 2, count + 1)
        edges[0], edges[-1] = min(edges[0], smallest), max(edges[-1], largest)
        ax.hist(positive, bins=edges, color="C0")
        ax.set_xscale("log")
        ax.set_xlim(low, high)
        _log_axis(ax.xaxis, low, high)
        shown = "log scale" + ("" if not zeros else "; the exact element is not shown"
                               if zeros == 1 else f"; the {zeros} exact elements are not shown")
        if value and off_scale:
            shown += f"\n{name} {tick_text(value)} is off the axis, to the {off_scale}"
        ax.set_xlabel(shown, fontsize=8)
        summary = (f"{label}: log-scaled, {positive.size} nonzero from "
                   f"{tick_text(float(positive.min()))} to {tick_text(float(positive.max()))}")
    ax.set_yscale("log")
    # Keep a count of 1 in view (autoscaling would start at the shortest bar) and room above
    # the tallest bar for the legend.
    tallest = float(max((patch.get_height() for patch in ax.patches), default=1.0))
    ceiling = max(tallest, 1.0) * 4
    ax.set_ylim(0.7, ceiling)
    # Counts: 1, 2, 5, 10, ... over up to three decades, else powers of ten.
    subs = (1.0, 2.0, 5.0) if ceiling < 2000 else (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10)), numticks=100))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}" if v < 1e5 else tick_text(v)))
    if value:
        text = f"{name} {tick_text(value)}"
        if off_scale:
            summary += f"; {text} off the axis, to the {off_scale}"
        else:
            ax.axvline(value, color="C3", linestyle="--", linewidth=1, label=text)
            ax.legend(fontsize=7, loc="best")
            summary += f"; {text}"
    return summary


def error_figure(title: str, errors: Mapping[str, Mapping[str, Any]]) -> Figure:
    """One row of histograms (absolute, relative, ULP error) per output. errors: output name
    -> {"abs", "rel", "ulp": 1-d arrays, "bounds": {kind: float|None}, "caption": str}.
    Nonzero errors go on log-scaled axes with log-spaced bins; integer ULP distances up to
    MAX_INTEGER_ULP_BINS get a bar each."""
    rows = max(len(errors), 1)
    fig = _figure(12, 3.6 * rows + 0.5)
    fig.suptitle(title, fontsize=11)
    subfigs = fig.subfigures(rows, 1, squeeze=False)[:, 0]
    lines = [title]
    for sub, (name, data) in zip(subfigs, errors.items(), strict=False):
        sub.suptitle(f"output {name} — {data.get('caption', '')}", fontsize=9)
        for ax, (kind, label) in zip(sub.subplots(1, 3), ERROR_KINDS, strict=True):
            values = np.asarray(data.get(kind, np.empty(0)), dtype=np.float64)
            integer = (kind == "ulp" and values.size > 0
                       and float(values.max()) <= MAX_INTEGER_ULP_BINS
                       and bool(np.all(np.abs(values - np.round(values)) < 1e-9)))
            bound = (BOUND_NAMES[kind], data.get("bounds", {}).get(kind))
            lines.append(f"output {name}, " + _histogram(ax, values, label, bound, integer))
    fig.kfuzz_description = "\n".join(lines)  # type: ignore[attr-defined]
    return fig


def error_histograms(path: Path, title: str, errors: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write `error_figure(title, errors)` to `path`. Returns the path."""
    return _save(error_figure(title, errors), path)


def _wrap(text: str, width: int, max_lines: int) -> list[str]:
    """`text` wrapped at `width` characters, its own line breaks kept, at most max_lines
    lines (the last ending in "…" when cut)."""
    lines = [part for line in text.splitlines() for part in (textwrap.wrap(line, width) or [""])]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 2] + " …"
    return lines


def failure_figure(title: str, headline: str, detail: str = "", note: str = "") -> Figure:
    """A panel for a finding with no element errors to plot (an error, crash, timeout or
    contract breach): the headline (e.g. "contract breach: writes-input: ..."), the stored
    detail (a crash's stderr, a traceback), and a note on why there is no histogram."""
    blocks = [(_wrap(headline, 105, 3), 13, "bold", "C3"),
              (_wrap(detail, 170, 12), 8, "normal", "0.1"),
              (_wrap(note, 170, 4), 9, "normal", "0.35")]
    blocks = [b for b in blocks if b[0]]
    spacing, gap, top = 1.45, 0.15, 0.45  # line height in font sizes; inches
    heights = [len(lines) * size * spacing / 72 for lines, size, _, _ in blocks]
    height = top + sum(heights) + gap * len(blocks) + 0.1
    fig = Figure(figsize=(12, height), dpi=100)
    fig.suptitle(title, fontsize=11, y=1 - 0.08 / height, va="top")
    y = height - top
    for (lines, size, weight, color), block in zip(blocks, heights, strict=True):
        # Stored messages are shown as written: no mathtext for a "$", no control characters.
        shown = re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "?", "\n".join(lines))
        fig.text(0.012, y / height, shown, ha="left", va="top", fontsize=size, weight=weight,
                 color=color, linespacing=spacing, parse_math=False,
                 family="monospace" if size == 8 else None)
        y -= block + gap
    fig.kfuzz_description = "\n".join(  # type: ignore[attr-defined]
        [title, headline] + ([detail] if detail else []) + ([note] if note else []))
    return fig


def failure_panel(path: Path, title: str, headline: str, detail: str = "",
                  note: str = "") -> Path:
    """Write `failure_figure(title, headline, detail, note)` to `path`. Returns the path."""
    return _save(failure_figure(title, headline, detail, note), path)


class TrendPoint(NamedTuple):
    """A finding seen by a run or replayed: when, with which kernel, its mismatch ratio
    (None for a finding or replay that has none: then `what` says which failure it was,
    one of UNJUDGED_ORDER) and its source, "seen" or "replay"."""

    at: dt.datetime
    kernel: str
    finding: str
    source: str
    ratio: float | None
    what: str | None = None


def _kernel_styles(kernels: Iterable[str]) -> dict[str, dict[str, Any]]:
    styles = {}
    for i, kernel in enumerate(sorted(set(kernels))):
        styles[kernel] = {"color": f"C{i % 10}",
                          "linestyle": ("-", "--", "-.", ":")[(i // 10) % 4]}
    return styles


def trend_figure(title: str, runs: Mapping[str, Sequence[tuple[dt.datetime, float]]],
                 points: Sequence[TrendPoint]) -> Figure:
    """The mismatch ratio over time, one colour per kernel: a line through the worst ratio
    each run saw with that kernel (runs: kernel -> [(time, ratio)]), and the findings'
    sightings and replays (points) under the kernel that ran them, each finding's joined by a
    thin dotted line. Points with no ratio go on a strip above, one row per kind of failure,
    not on the ratio axis."""
    judged = [p for p in points if p.ratio is not None]
    unjudged = [p for p in points if p.ratio is None]
    styles = _kernel_styles([*runs, *(p.kernel for p in points)])
    fig = _figure(12, 4.4 + (0.35 + 0.3 * len({p.what for p in unjudged}) if unjudged else 0))
    fig.suptitle(title, fontsize=10)
    if unjudged:
        rows = [w for w in UNJUDGED_ORDER if any(p.what == w for p in unjudged)]
        rows += sorted({str(p.what) for p in unjudged} - set(rows))
        strip, ax = fig.subplots(2, 1, sharex=True,
                                 height_ratios=[0.35 + 0.3 * len(rows), 3.6])
    else:
        rows, strip, ax = [], None, fig.subplots()
    lines = [title]
    for kernel, seq in runs.items():
        if not seq:
            continue
        times, ratios = zip(*sorted(seq), strict=True)
        ax.plot(date2num(times), [100 * r for r in ratios], marker="s", linewidth=1.8,
                markersize=5, zorder=2, **styles[kernel])
        lines.append(f"runs with {kernel}: " + ", ".join(
            f"{t.isoformat(timespec='minutes')} {percent(r)}" for t, r in zip(times, ratios,
                                                                               strict=True)))
    tracks: dict[tuple[str, str], list[TrendPoint]] = defaultdict(list)
    for p in judged:
        tracks[(p.finding, p.kernel)].append(p)
    for (finding, kernel), track in tracks.items():
        track.sort(key=lambda p: p.at)
        color = styles[kernel]["color"]
        ax.plot(date2num([p.at for p in track]), [100 * float(p.ratio or 0) for p in track],
                color=color, linewidth=0.8, linestyle=":", alpha=0.6, zorder=1)
        for source, marker in SOURCE_MARKERS.items():
            chosen = [p for p in track if p.source == source]
            if chosen:
                ax.scatter(date2num([p.at for p in chosen]),
                           [100 * float(p.ratio or 0) for p in chosen], color=color,
                           marker=marker, s=28, zorder=3)
        lines.append(f"finding {finding} with {kernel}: " + ", ".join(
            f"{p.source} {percent(p.ratio or 0)}" for p in track))
    # Mismatch ratios that matter span 0.001% to 100%: linear below 0.01%, log above.
    ax.set_yscale("symlog", linthresh=0.01)
    # A little room below 0 keeps the markers of exact runs and replays whole.
    ax.set_ylim(bottom=-0.002, top=150)
    ax.set_yticks(RATIO_TICKS, [f"{t:g}" for t in RATIO_TICKS])
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("mismatch ratio (%)")
    ax.set_xlabel("time (UTC)")
    ax.grid(axis="y", alpha=0.3)
    if strip is not None:
        lines += _unjudged_strip(strip, rows, unjudged, styles)
    if not _trend_legend(ax, runs, styles):
        ax.text(0.5, 0.5, "no runs or replays recorded", ha="center", va="center",
                transform=ax.transAxes)
        lines.append("no runs or replays recorded")
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    fig.kfuzz_description = "\n".join(lines)  # type: ignore[attr-defined]
    return fig


def _unjudged_strip(strip: Any, rows: list[str], unjudged: Sequence[TrendPoint],
                    styles: Mapping[str, dict[str, Any]]) -> list[str]:
    """Draw the points with no mismatch ratio on `strip`, one row per kind of failure (`rows`);
    returns their lines of the plot's description."""
    for p in unjudged:
        ax_y = rows.index(str(p.what))
        strip.scatter(date2num([p.at]), [ax_y], color=styles[p.kernel]["color"],
                      marker=SOURCE_MARKERS.get(p.source, "o"), s=28, zorder=3)
    strip.set_yticks(range(len(rows)), rows, fontsize=8)
    strip.set_ylim(-0.6, len(rows) - 0.4)
    strip.invert_yaxis()
    strip.grid(axis="y", alpha=0.3)
    strip.set_title("no mismatch ratio (kept off the ratio axis below)", fontsize=8,
                    loc="left")
    strip.tick_params(axis="x", labelbottom=False)
    return [f"finding {p.finding} with {p.kernel}: {p.source} {p.what}, no mismatch ratio"
            for p in unjudged]


def _trend_legend(ax: Any, runs: Mapping[str, Any], styles: Mapping[str, dict[str, Any]]) -> bool:
    """Add the legend of the kernels (`styles`) and the markers to `ax`; False when there is
    no kernel to show (no runs, no points)."""
    handles = [Line2D([], [], marker="s" if kernel in runs else None, markersize=5,
                      linewidth=1.8, label=kernel, **style) for kernel, style in styles.items()]
    if not handles:
        return False
    gray: dict[str, Any] = {"color": "0.35", "linestyle": "none"}
    handles += [
        Line2D([], [], marker="s", markersize=5, label="worst case of a run", **gray),
        Line2D([], [], marker="o", label="finding, seen by a run", **gray),
        Line2D([], [], marker="x", label="finding, replayed", **gray),
        Line2D([], [], color="0.35", linestyle=":", label="one finding over time"),
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title="kernel", title_fontsize=7)
    return True


def ratio_trend(path: Path, title: str, runs: Mapping[str, Sequence[tuple[dt.datetime, float]]],
                points: Sequence[TrendPoint]) -> Path:
    """Write `trend_figure(title, runs, points)` to `path`. Returns the path."""
    return _save(trend_figure(title, runs, points), path)

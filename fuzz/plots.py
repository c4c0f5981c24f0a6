"""PNG plots for `kfuzz report` (matplotlib, the optional extra `report`).

Importing this module imports matplotlib (ImportError without it; `kfuzz.report` turns that
into a one-line message). Figures are built with `matplotlib.figure.Figure`, not pyplot: no
global state and no display needed, and saving a PNG uses the Agg renderer, so the report
renders the same on a headless CI runner as at a desk.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

# Integer ULP distances read best as one bar per distance; past this many, log-spaced bins.
MAX_INTEGER_ULP_BINS = 40
LOG_BINS = 40
RATIO_TICKS = (0, 0.01, 0.1, 1, 10, 100)
ERROR_KINDS = (("abs", "absolute error |a - e|"), ("rel", "relative error |a - e| / |e|"),
               ("ulp", "ULP distance"))
# What the comparator's bound on each measure is called. Allclose allows atol + rtol * |e|, so
# its atol and rtol lines each show one part of the bound, not the bound itself.
BOUND_NAMES = {"abs": "atol", "rel": "rtol", "ulp": "ulp bound"}


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _histogram(ax: Any, values: np.ndarray, label: str, bound: tuple[str, float | None],
               integer: bool) -> None:
    zeros = int(np.count_nonzero(values == 0))
    positive = values[values > 0]
    ax.set_title(f"{label}\n{values.size} elements, {zeros} exactly 0", fontsize=9)
    ax.set_ylabel("elements")
    if values.size == 0:
        ax.text(0.5, 0.5, "no finite pair", ha="center", va="center", transform=ax.transAxes)
        return
    if integer:
        top = int(math.ceil(float(values.max())))
        ax.hist(values, bins=np.arange(-0.5, top + 1.5), color="C0")
        ax.set_xlabel("ULP")
    elif positive.size == 0:
        ax.text(0.5, 0.5, "every element is exact", ha="center", va="center",
                transform=ax.transAxes)
        return
    else:
        # Padded so that a single distinct value still gets a visible bar.
        low, high = float(positive.min()) / 1.25, float(positive.max()) * 1.25
        ax.hist(positive, bins=np.geomspace(low, high, LOG_BINS + 1), color="C0")
        ax.set_xscale("log")
        # Errors often span less than a decade, where a log axis has no labelled major
        # tick: place and label a few ticks explicitly.
        ticks = np.geomspace(low, high, 5)
        ax.set_xticks(ticks, [f"{t:.2g}" for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("(zeros not shown)")
    ax.set_yscale("log")
    # Keep a count of 1 in view: autoscaling would start at the shortest bar.
    ax.set_ylim(bottom=0.7)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    name, value = bound
    if value:
        ax.axvline(value, color="C3", linestyle="--", linewidth=1, label=f"{name} {value:g}")
        ax.legend(fontsize=8)


def error_histograms(path: Path, title: str, errors: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write one row of histograms (absolute, relative, ULP error) per output to `path`.
    errors: output name -> {"abs", "rel", "ulp": 1-d arrays, "bounds": {kind: float|None},
    "caption": str}. Returns the path."""
    rows = max(len(errors), 1)
    fig = _figure(12, 3.6 * rows + 0.5)
    fig.suptitle(title, fontsize=11)
    subfigs = fig.subfigures(rows, 1, squeeze=False)[:, 0]
    for sub, (name, data) in zip(subfigs, errors.items(), strict=False):
        sub.suptitle(f"output {name} — {data.get('caption', '')}", fontsize=9)
        for ax, (kind, label) in zip(sub.subplots(1, 3), ERROR_KINDS, strict=True):
            values = np.asarray(data.get(kind, np.empty(0)), dtype=np.float64)
            integer = (kind == "ulp" and values.size > 0
                       and float(values.max()) <= MAX_INTEGER_ULP_BINS
                       and bool(np.all(np.abs(values - np.round(values)) < 1e-9)))
            bound = (BOUND_NAMES[kind], data.get("bounds", {}).get(kind))
            _histogram(ax, values, label, bound, integer)
    return _save(fig, path)


def ratio_trend(path: Path, title: str, runs: Sequence[tuple[dt.datetime, float]],
                findings: Mapping[str, Sequence[tuple[dt.datetime, float, str]]]) -> Path:
    """Write the mismatch ratio over time to `path`: the worst ratio each run saw on the
    target (runs: (time, ratio)), and per finding its sightings and replays (findings: label
    -> [(time, ratio, "seen"|"replay")]). Returns the path."""
    fig = _figure(12, 4)
    ax = fig.subplots()
    ax.set_title(title, fontsize=10)
    if runs:
        times, ratios = zip(*sorted(runs), strict=True)
        ax.plot(date2num(times), [100 * r for r in ratios], color="black", marker="s", linewidth=1.5,
                label="worst case seen by each run")
    for i, (label, points) in enumerate(findings.items()):
        points = sorted(points)
        color = f"C{i % 10}"
        ax.plot(date2num([p[0] for p in points]), [100 * p[1] for p in points], color=color,
                linewidth=1, alpha=0.7)
        for marker, source in (("o", "seen"), ("x", "replay")):
            chosen = [p for p in points if p[2] == source]
            if chosen:
                ax.scatter(date2num([p[0] for p in chosen]), [100 * p[1] for p in chosen], color=color,
                           marker=marker, label=f"{label} ({source})", zorder=3)
    # Mismatch ratios that matter span 0.001% to 100%: linear below 0.01%, log above.
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_ylim(bottom=0, top=150)
    ax.set_yticks(RATIO_TICKS, [f"{t:g}" for t in RATIO_TICKS])
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("mismatch ratio (%)")
    ax.set_xlabel("time (UTC)")
    if runs or findings:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, "no runs or replays recorded", ha="center", va="center",
                transform=ax.transAxes)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    return _save(fig, path)

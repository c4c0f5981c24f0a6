"""`kfuzz report --out DIR`: a static HTML page and a Markdown summary of a corpus.

Per target: the findings (status, kind, failure, stored mismatch ratio and the ratio now), the
worst points stored with each finding, error distributions (absolute, relative and ULP
histograms) and the mismatch ratio across runs and replays, as PNG plots (`kfuzz.present.plots`).

The corpus stores metrics, not tensors; the per-element errors behind the histograms are
recomputed by running each plotted finding's stored case again through the executor
(`kfuzz.present.rerun`: same materialise, kernel and oracle path as a replay). That run is not
recorded as a replay: a report only reads. Error, crash, timeout and contract findings
have no element errors and are not rerun (a crash would take the report down, a timeout hang
it): each gets a panel naming its failure instead, and a place off the trend's ratio axis. The
files written:

    DIR/index.html   the page (no script, no external resource)
    DIR/summary.md   the same tables in Markdown, with links to the plots
    DIR/plots/*.png
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfuzz.errors import KfuzzError
from kfuzz.present.attribution import attribution_html, attribution_lines
from kfuzz.present.rerun import rerun
from kfuzz.present.runs import COVERAGE_HEADERS, RUN_HEADERS, campaigns, coverage_rows, run_cells
from kfuzz.present.text import html_table, md_table, percent
from kfuzz.store.corpus import CorpusStore
from kfuzz.store.rows import decode_row, now, short_id

DEFAULT_MAX_PLOTS = 8
# Failures with no mismatch ratio: what each is called on the page, and why it has no
# histogram. Their cases are not rerun for the report (a crash would take the report down
# with it, a timeout would hang it; `kfuzz replay` runs those in a worker).
UNJUDGED_WORDS = {"contract": "contract breach", "crash": "crash", "error": "error",
                  "timeout": "timeout"}
UNJUDGED_NOTES = {
    "contract": "The kernel broke its output contract, a failure of its own: its outputs "
                "were not compared, so there are no element errors to plot.",
    "crash": "The kernel took its process down: there are no outputs, so no element errors "
             "to plot.",
    "error": "The kernel raised: there are no outputs, so no element errors to plot.",
    "timeout": "The kernel ran past the time limit: there are no outputs, so no element "
               "errors to plot.",
}
UNJUDGED_RERUN = ("Not rerun for this report; `kfuzz replay` reruns it (crashes and timeouts "
                  "in a worker process).")


@dataclass
class ReportFiles:
    """What `write_report` wrote."""

    html: Path
    markdown: Path
    plots: list[Path] = field(default_factory=list)
    findings: int = 0
    targets: int = 0


# -- gathering ---------------------------------------------------------------------------------

@dataclass
class FindingItem:
    row: dict[str, Any]
    replays: list[dict[str, Any]]
    now: dict[str, dict[str, Any]] | None = None
    now_error: str | None = None
    plot: str | None = None

    @property
    def id(self) -> str:
        """The finding's short id."""
        return short_id(str(self.row["fingerprint"]))

    @property
    def unjudged(self) -> str | None:
        """The failure ("contract", "crash", "error", "timeout") of a finding with no
        mismatch ratio, else None."""
        failure = str(self.row.get("failure"))
        return failure if failure in UNJUDGED_WORDS else None

    def now_ratio(self) -> float | None:
        """The worst mismatch ratio of the case run again for this report: 100% when the
        kernel or oracle raised, None when it was not run or has no ratio."""
        if self.unjudged:
            return None
        if self.now_error is not None:
            return 1.0 if self.now_error.startswith("kernel or oracle raised") else None
        if not self.now:
            return None
        return max(m["mismatch_ratio"] for m in self.now.values())


def _time(text: Any) -> dt.datetime | None:
    if not text:
        return None
    try:
        stamp = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return stamp.replace(tzinfo=None)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _recompute(item: FindingItem, device: str) -> dict[str, Any] | None:
    """Run the finding's case again; fill item.now (metrics) and return the errors by
    output, or record why it could not run."""
    row = item.row
    if not isinstance(row.get("case"), dict):
        item.now_error = "stored case is not a JSON object"
        return None
    try:
        metrics, errors = rerun(row, device)
    except KfuzzError as exc:
        item.now_error = str(exc)
        return None
    except Exception as exc:  # the kernel's or oracle's own exception: part of the report
        item.now_error = f"kernel or oracle raised {type(exc).__name__}: {exc}"[:500]
        return None
    item.now = metrics
    return errors


def _gather(store: CorpusStore) -> tuple[dict[str, list[FindingItem]], list[dict[str, Any]]]:
    replays: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in store.replays():
        replays[r["fingerprint"]].append(r)
    by_target: dict[str, list[FindingItem]] = defaultdict(list)
    for raw in store.findings():
        try:
            row = decode_row(raw)
        except KfuzzError as exc:
            row = dict(raw, case=None, metrics=None, comparator=None, _error=str(exc))
        by_target[str(row.get("target"))].append(FindingItem(row, replays.get(raw["fingerprint"], [])))
    for items in by_target.values():
        # Open before fixed, then the worst first.
        items.sort(key=lambda f: (f.row.get("status") != "open",
                                  -(f.row.get("mismatch_ratio") or 0.0), f.row["fingerprint"]))
    return dict(sorted(by_target.items())), store.runs()


def _replay_unjudged(replay: dict[str, Any]) -> str | None:
    """What a replay with no mismatch ratio was ("not run": it could not be replayed), or
    None for one with a ratio."""
    if replay.get("status") == "error":
        return "not run"
    if replay.get("mismatch_ratio") is not None:
        return None
    text = str(replay.get("error") or "")
    for prefix, word in (("Contract:", "contract"), ("Crash:", "crash"),
                         ("Timeout:", "timeout")):
        if text.startswith(prefix):
            return word
    return "error"


def trend_data(target: str, items: list[FindingItem], runs: list[dict[str, Any]],
                limit: int) -> tuple[dict[str, list[tuple[dt.datetime, float]]], list[Any]]:
    """(kernel -> [(run start, the worst ratio that run saw on target with that kernel)],
    the `plots.TrendPoint`s of the first `limit` findings: each sighting under the finding's
    kernel and each replay under the kernel it ran with, a substitute's included)."""
    from kfuzz.present.plots import TrendPoint

    worst: dict[str, dict[dt.datetime, float]] = defaultdict(dict)
    for run in runs:
        started = _time(run.get("started"))
        if started is None:
            continue
        for campaign in campaigns(run):
            if campaign.get("target") != target:
                continue
            # Seed shards of one target in one run: the worst of them.
            by_time = worst[str(campaign.get("kernel") or "?")]
            ratio = float(campaign.get("peak_ratio") or 0.0)
            by_time[started] = max(ratio, by_time.get(started, 0.0))
    run_lines = {kernel: sorted(by_time.items()) for kernel, by_time in worst.items()}
    points = []
    for item in items[:limit]:
        row = item.row
        seen = _time(row.get("last_seen"))
        if seen and (item.unjudged or row.get("mismatch_ratio") is not None):
            points.append(TrendPoint(
                seen, str(row.get("kernel")), item.id, "seen",
                None if item.unjudged else float(row["mismatch_ratio"]), item.unjudged))
        for replay in item.replays:
            at = _time(replay.get("at"))
            if at:
                what = _replay_unjudged(replay)
                points.append(TrendPoint(
                    at, str(replay.get("kernel")), item.id, "replay",
                    None if what else float(replay["mismatch_ratio"]), what))
    return run_lines, points


def trend_points(target: str, items: list[FindingItem], runs: list[dict[str, Any]],
                  limit: int) -> tuple[list[tuple[dt.datetime, float]],
                                       dict[str, list[tuple[dt.datetime, float, str]]]]:
    """`trend_data` in the shape it had before the trend drew a line per kernel: (every
    run's worst ratio on target, "id kernel" -> [(time, ratio, "seen"|"replay")] for the
    points with a ratio). Kept for the callers of that shape (tests/test_portable.py)."""
    run_lines, points = trend_data(target, items, runs, limit)
    tracks: dict[str, list[tuple[dt.datetime, float, str]]] = defaultdict(list)
    for p in points:
        if p.ratio is not None:
            tracks[f"{p.finding} {p.kernel}"].append((p.at, p.ratio, p.source))
    return sorted(x for line in run_lines.values() for x in line), dict(tracks)


# -- writing -----------------------------------------------------------------------------------

def _stored_ratio(item: FindingItem) -> str:
    """The stored mismatch ratio; a finding with none (its row says 100% by convention)
    reads as what it is."""
    return f"- ({item.unjudged})" if item.unjudged else percent(item.row.get("mismatch_ratio"))


def _failure_headline(row: dict[str, Any]) -> tuple[str, str]:
    """(headline, detail) for a finding with no mismatch ratio: "contract breach: <breach>:
    <message>", "crash: killed by SIGSEGV", "error: ValueError: <message>", "timeout: no
    result after 60s"; the detail is what the stored message has beyond the headline (a
    crash's stderr, the rest of a traceback)."""
    failure = str(row.get("failure"))
    error = str(row.get("error") or "").strip()
    first, _, rest = error.partition("\n")
    for prefix in ("Contract: ", "Crash: ", "Timeout: "):
        if first.startswith(prefix):
            first = first[len(prefix):]
    if failure == "crash" and (row.get("signal") or row.get("exit_code") is not None):
        first = (f"killed by {row['signal']}" if row.get("signal")
                 else f"exited with status {row['exit_code']}")
        rest = error
    headline = f"{UNJUDGED_WORDS[failure]}: {first or row.get('error_type') or 'no message stored'}"
    return headline, rest.strip()


def _worst_points(row: dict[str, Any]) -> list[list[str]]:
    out = []
    for name, metrics in (row.get("metrics") or {}).items():
        if not isinstance(metrics, dict):
            continue
        for point in metrics.get("worst_points", []):
            out.append([name, str(tuple(point.get("index", []))), str(point.get("actual")),
                        str(point.get("expected")), str(point.get("diff")),
                        str(point.get("allowed"))])
    return out


FINDING_HEADERS = ["id", "status", "kind", "failure", "kernel", "oracle", "ratio stored",
                   "ratio now", "seen", "first seen", "last seen", "last replay"]
POINT_HEADERS = ["output", "index", "actual", "expected", "diff", "allowed"]


def _finding_cells(item: FindingItem) -> list[str]:
    row = item.row
    replay = row.get("last_replay_status") or "-"
    if row.get("last_replay"):
        replay = f"{replay} ({row['last_replay']})"
    return [item.id, str(row.get("status")), str(row.get("kind")), str(row.get("failure")),
            str(row.get("kernel")), str(row.get("oracle")), _stored_ratio(item),
            percent(item.now_ratio()), str(row.get("times_seen")), str(row.get("first_seen")),
            str(row.get("last_seen")), replay]


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1300px; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #eee; }
img { max-width: 100%; border: 1px solid #ddd; }
pre { background: #f6f6f6; padding: 0.5em; white-space: pre-wrap; font-size: 0.85em; }
.open { color: #a00; } .fixed { color: #070; } .note { color: #666; }
.failure { color: #a00; font-weight: bold; }
"""


def write_report(store: CorpusStore, out_dir: str | Path, *, device: str = "cpu",
                 max_plots: int = DEFAULT_MAX_PLOTS) -> ReportFiles:
    """Write the report for `store` into `out_dir` (created; files in it replaced).
    max_plots: at most this many findings per target get error histograms and a line in the
    trend plot (open ones first, then the worst). Returns what was written. Raises
    KfuzzError when out_dir is not a writable directory or matplotlib is missing."""
    try:
        from kfuzz.present import plots
    except ImportError:
        raise KfuzzError(
            "kfuzz report draws its plots with matplotlib, which is not installed; "
            "pip install 'kfuzz[report]'"
        ) from None
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise KfuzzError(f"--out {str(out_dir)!r} is a file; pass a directory for the report")
    try:
        (out / "plots").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KfuzzError(f"--out {str(out_dir)!r}: cannot create it ({exc.strerror})") from None
    by_target, runs = _gather(store)
    files = ReportFiles(out / "index.html", out / "summary.md", targets=len(by_target))
    html_parts: list[str] = []
    md_parts: list[str] = []
    for target, items in by_target.items():
        files.findings += len(items)
        section_html, section_md = _target_section(plots, files, target, items, runs,
                                                   device=device, max_plots=max_plots)
        html_parts.append(section_html)
        md_parts.append(section_md)
    header = _summary_line(store, by_target, runs)
    run_rows = [run_cells(r) for r in runs]
    cover = coverage_rows(runs)
    nav = " · ".join(f'<a href="#{html.escape(_slug(t))}">{html.escape(t)}</a>' for t in by_target)
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>kfuzz report</title><style>{STYLE}</style></head><body>"
        f"<h1>kfuzz report</h1><p>{html.escape(header)}</p>"
        + (f"<p>{nav}</p>" if nav else "<p>No findings.</p>")
        + "<h2>Runs</h2>" + (html_table(RUN_HEADERS, run_rows) if run_rows else "<p>none</p>")
        + "".join(html_parts)
        + ("<h2>Coverage</h2>" + html_table(COVERAGE_HEADERS, cover) if cover else "")
        + "</body></html>\n"
    )
    markdown = (
        f"# kfuzz report\n\n{header}\n\n## Runs\n\n"
        + (md_table(RUN_HEADERS, run_rows) if run_rows else "none") + "\n\n"
        + ("\n".join(md_parts) if md_parts else "No findings.\n")
        + (f"\n## Coverage\n\n{md_table(COVERAGE_HEADERS, cover)}\n" if cover else "")
    )
    files.html.write_text(page, encoding="utf-8")
    files.markdown.write_text(markdown, encoding="utf-8")
    return files


def _target_section(plots: Any, files: ReportFiles, target: str, items: list[FindingItem],
                    runs: list[dict[str, Any]], *, device: str, max_plots: int) -> tuple[str, str]:
    """One target's section, (HTML, Markdown): its trend plot, its findings table and the
    details of the first `max_plots` findings with their plots (added to `files.plots`)."""
    out = files.html.parent
    slug = _slug(target)
    run_lines, points = trend_data(target, items, runs, max_plots)
    trend = plots.ratio_trend(out / "plots" / f"trend-{slug}.png",
                              f"{target}: mismatch ratio across runs and replays, "
                              "by kernel", run_lines, points)
    files.plots.append(trend)
    details_html, details_md = [], []
    for item in items[:max_plots]:
        path = _finding_plot(plots, out / "plots" / f"errors-{slug}-{item.id}.png", target, item,
                             device)
        if path is not None:
            files.plots.append(path)
            item.plot = f"plots/{path.name}"
        details_html.append(_finding_html(item))
        details_md.append(_finding_md(item))
    skipped = len(items) - min(len(items), max_plots)
    note = f"{skipped} more finding(s) listed above without plots (--max-plots {max_plots})." \
        if skipped else ""
    table_rows = [_finding_cells(i) for i in items]
    section_html = (
        f'<section id="{html.escape(slug)}"><h2>{html.escape(target)}</h2>'
        f'<img src="plots/{trend.name}" alt="{html.escape(target)} mismatch ratio trend">'
        f"{html_table(FINDING_HEADERS, table_rows)}"
        + (f'<p class="note">{html.escape(note)}</p>' if note else "")
        + "".join(details_html) + "</section>"
    )
    section_md = (
        f"## {target}\n\n![{target} mismatch ratio trend](plots/{trend.name})\n\n"
        f"{md_table(FINDING_HEADERS, table_rows)}\n\n" + (f"{note}\n\n" if note else "")
        + "\n".join(details_md)
    )
    return section_html, section_md


def _finding_plot(plots: Any, path: Path, target: str, item: FindingItem,
                  device: str) -> Path | None:
    """Draw one finding's plot at `path`: a panel naming the failure of a finding with no
    mismatch ratio, else the error histograms of its case run again (fills item.now). None
    when the case could not be run again (item.now_error says why)."""
    if item.unjudged:
        # Not rerun: nothing to compare, and a crash or hang would end the report.
        headline, detail = _failure_headline(item.row)
        return plots.failure_panel(
            path, f"{target} {item.id}: {item.row.get('kernel')} vs {item.row.get('oracle')}",
            headline, detail, f"{UNJUDGED_NOTES[item.unjudged]} {UNJUDGED_RERUN}")
    errors = _recompute(item, device)
    if errors is None:
        return None
    for name, data in errors.items():
        first = (item.now or {}).get(name, {}).get("message", "").split("\n")[0]
        extra = f"; {data['nonfinite']} non-finite pairs not shown" if data["nonfinite"] else ""
        data["caption"] = f"now: {first}{extra}"
    return plots.error_histograms(
        path, f"{target} {item.id}: {item.row['kernel']} vs {item.row['oracle']}, "
        f"errors now (case replayed for this report)", errors)


def _summary_line(store: CorpusStore, by_target: dict[str, list[FindingItem]],
                  runs: list[dict[str, Any]]) -> str:
    rows = [i.row for items in by_target.values() for i in items]
    status: dict[str, int] = defaultdict(int)
    for row in rows:
        status[str(row.get("status"))] += 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
    replays = store.count_replays()
    return (f"Corpus {store.path}, report made {now()}: {len(rows)} finding(s)"
            + (f" ({counts})" if counts else "") + f" on {len(by_target)} target(s); "
            f"{len(runs)} run(s), {replays} replay(s).")


def _finding_title(item: FindingItem) -> str:
    row = item.row
    ratio = "no mismatch ratio" if item.unjudged else \
        f"stored ratio {percent(row.get('mismatch_ratio'))}"
    return (f"{item.id}: {row.get('kernel')} vs {row.get('oracle')}, {row.get('status')}, "
            f"{row.get('kind')} {row.get('failure')}, {ratio}")


def _finding_html(item: FindingItem) -> str:
    esc = html.escape
    row = item.row
    parts = [f'<h3 id="f-{esc(item.id)}" class="{esc(str(row.get("status")))}">'
             f"{esc(_finding_title(item))}</h3>",
             f"<pre>case {esc(json.dumps(row.get('case')))}"
             + (f"\ncomparator {esc(json.dumps(row.get('comparator')))}"
                if row.get("comparator") else "") + "</pre>"]
    parts.append(attribution_html(row.get("attribution")))
    points = _worst_points(row)
    if points:
        parts.append("<p>Worst points when stored:</p>" + html_table(POINT_HEADERS, points))
    if item.unjudged:
        headline = esc(_failure_headline(row)[0])
        parts.append(f'<p class="failure">{headline}</p>')
        if item.plot:
            parts.append(f'<img src="{esc(item.plot)}" alt="{headline}">')
    elif item.plot:
        parts.append(f'<img src="{esc(item.plot)}" alt="error histograms of {esc(item.id)}">')
    elif item.now_error:
        parts.append(f'<p class="note">Not replayed for this report: {esc(item.now_error)}</p>')
    return "".join(parts)


def _finding_md(item: FindingItem) -> str:
    row = item.row
    lines = [f"### {_finding_title(item)}\n", f"case `{json.dumps(row.get('case'))}`\n"]
    if row.get("attribution"):
        lines.append("```\n" + "\n".join(attribution_lines(row["attribution"])) + "\n```\n")
    points = _worst_points(row)
    if points:
        lines.append("Worst points when stored:\n\n" + md_table(POINT_HEADERS, points) + "\n")
    if item.unjudged:
        lines.append(f"**{_failure_headline(row)[0]}**\n")
        if item.plot:
            lines.append(f"![failure panel of {item.id}]({item.plot})\n")
    elif item.plot:
        lines.append(f"![error histograms of {item.id}]({item.plot})\n")
    elif item.now_error:
        lines.append(f"Not replayed for this report: {item.now_error}\n")
    return "\n".join(lines)

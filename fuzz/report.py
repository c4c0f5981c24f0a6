"""`kfuzz report --out DIR`: a static HTML page and a Markdown summary of a corpus.

Per target: the findings (status, kind, failure, stored mismatch ratio and the ratio now), the
worst points stored with each finding, error distributions (absolute, relative and ULP
histograms) and the mismatch ratio across runs and replays, as PNG plots (`kfuzz.plots`).

The corpus stores metrics, not tensors; the per-element errors behind the histograms are
recomputed by running each plotted finding's stored case again through the executor
(`kfuzz.executor.case_outputs`: same materialise, kernel and oracle path as a replay). That run
is not recorded as a replay: a report only reads. The files written:

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

import torch
from kfuzz.compare import Comparator, compare
from kfuzz.corpus import CorpusStore, decode_row, now
from kfuzz.errors import KfuzzError

DEFAULT_MAX_PLOTS = 8
SHORT_ID = 12


@dataclass
class ReportFiles:
    """What `write_report` wrote."""

    html: Path
    markdown: Path
    plots: list[Path] = field(default_factory=list)
    findings: int = 0
    targets: int = 0


def element_errors(actual: torch.Tensor, expected: torch.Tensor,
                   comparator: Comparator) -> dict[str, Any]:
    """Per-element errors of one output, as `kfuzz.compare.compare` sees them: the reference
    rounded to the output dtype when the comparator says so, both promoted to float64.

    Returns {"abs", "rel", "ulp": 1-d float64 numpy arrays over the pairs finite on both
    sides (rel over those with a nonzero reference; ulp empty for a non-floating output),
    "nonfinite": the count of pairs left out, "bounds": {"abs", "rel", "ulp": the
    comparator's bound for that measure, or None}}. Raises ShapeMismatch (from compare's
    rules) when the shapes differ."""
    if actual.shape != expected.shape:
        from kfuzz.compare import ShapeMismatch

        raise ShapeMismatch(f"shapes differ: actual {tuple(actual.shape)}, "
                            f"expected {tuple(expected.shape)}")
    dtype = actual.dtype
    cmp = comparator.resolved(dtype)
    if (cmp.round_expected and dtype.is_floating_point and expected.is_floating_point()
            and expected.dtype != dtype):
        expected = expected.to(dtype)
    a = actual.detach().cpu().reshape(-1).to(torch.float64)
    e = expected.detach().cpu().reshape(-1).to(torch.float64)
    finite = torch.isfinite(a) & torch.isfinite(e)
    a, e = a[finite], e[finite]
    diff = (a - e).abs()
    nonzero = e != 0
    rel = diff[nonzero] / e[nonzero].abs()
    if dtype.is_floating_point:
        info = torch.finfo(dtype)
        # The spacing of dtype at |e|: eps * 2**(exponent - 1), where |e| = m * 2**exponent
        # with m in [0.5, 1); clamping to the smallest normal gives the subnormal step.
        _, exponent = torch.frexp(e.abs().clamp_min(info.tiny))
        ulp = diff / torch.ldexp(torch.full_like(e, info.eps), exponent - 1)
    else:
        ulp = torch.empty(0, dtype=torch.float64)
    bounds: dict[str, float | None] = {"abs": None, "rel": None, "ulp": None}
    if cmp.mode == "allclose":
        bounds.update(abs=cmp.atol or None, rel=cmp.rtol or None)
    elif cmp.mode == "ulp":
        bounds["ulp"] = cmp.ulp
    return {"abs": diff.numpy(), "rel": rel.numpy(), "ulp": ulp.numpy(),
            "nonfinite": int((~finite).sum()), "bounds": bounds}


# -- gathering ---------------------------------------------------------------------------------

@dataclass
class _Finding:
    row: dict[str, Any]
    replays: list[dict[str, Any]]
    now: dict[str, dict[str, Any]] | None = None
    now_error: str | None = None
    plot: str | None = None

    @property
    def id(self) -> str:
        return str(self.row["fingerprint"])[:SHORT_ID]

    def now_ratio(self) -> float | None:
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


def _recompute(item: _Finding, device: str) -> dict[str, Any] | None:
    """Run the finding's case again; fill item.now (metrics) and return the errors by
    output, or record why it could not run."""
    from kfuzz import targets as registry
    from kfuzz.executor import Job, case_outputs, with_overrides

    row = item.row
    if not isinstance(row.get("case"), dict):
        item.now_error = "stored case is not a JSON object"
        return None
    job = Job(row["target"], row["kernel"], row["oracle"], row["case"], row.get("comparator"),
              device, plugins=tuple(row.get("plugins") or ()))
    try:
        for plugin in job.plugins:  # the ones the finding recorded
            registry.load_plugin(plugin)
        target = registry.get(row["target"])
        actual, expected = case_outputs(job)
        errors, metrics = {}, {}
        for name in target.outputs:
            comparator = with_overrides(target.comparators[name], row.get("comparator"))
            metrics[name] = compare(actual[name], expected[name], comparator).to_dict()
            errors[name] = element_errors(actual[name], expected[name], comparator)
    except KfuzzError as exc:
        item.now_error = str(exc)
        return None
    except Exception as exc:  # the kernel's or oracle's own exception: part of the report
        item.now_error = f"kernel or oracle raised {type(exc).__name__}: {exc}"[:500]
        return None
    item.now = metrics
    return errors


def _gather(store: CorpusStore) -> tuple[dict[str, list[_Finding]], list[dict[str, Any]]]:
    replays: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in store.replays():
        replays[r["fingerprint"]].append(r)
    by_target: dict[str, list[_Finding]] = defaultdict(list)
    for raw in store.findings():
        try:
            row = decode_row(raw)
        except KfuzzError as exc:
            row = dict(raw, case=None, metrics=None, comparator=None, _error=str(exc))
        by_target[str(row.get("target"))].append(_Finding(row, replays.get(raw["fingerprint"], [])))
    for items in by_target.values():
        # Open before fixed, then the worst first.
        items.sort(key=lambda f: (f.row.get("status") != "open",
                                  -(f.row.get("mismatch_ratio") or 0.0), f.row["fingerprint"]))
    return dict(sorted(by_target.items())), store.runs()


def _trend_points(target: str, items: list[_Finding], runs: list[dict[str, Any]],
                  limit: int) -> tuple[list[tuple[dt.datetime, float]],
                                       dict[str, list[tuple[dt.datetime, float, str]]]]:
    run_points = []
    for run in runs:
        started = _time(run.get("started"))
        for campaign in run["results"] or []:
            if isinstance(campaign, dict) and campaign.get("target") == target and started:
                run_points.append((started, float(campaign.get("peak_ratio") or 0.0)))
    finding_points: dict[str, list[tuple[dt.datetime, float, str]]] = {}
    for item in items[:limit]:
        # One line per kernel: the finding's own, and each kernel it was replayed with instead.
        lines: dict[str, list[tuple[dt.datetime, float, str]]] = defaultdict(list)
        own = f"{item.id} {item.row.get('kernel')}"
        seen = _time(item.row.get("last_seen"))
        if seen and item.row.get("mismatch_ratio") is not None:
            lines[own].append((seen, float(item.row["mismatch_ratio"]), "seen"))
        for replay in item.replays:
            at = _time(replay.get("at"))
            if at and replay.get("mismatch_ratio") is not None:
                lines[f"{item.id} {replay.get('kernel')}"].append(
                    (at, float(replay["mismatch_ratio"]), "replay"))
        finding_points.update(lines)
    return run_points, finding_points


# -- writing -----------------------------------------------------------------------------------

def _pct(ratio: Any) -> str:
    return "-" if ratio is None else f"{100 * float(ratio):.4g}%"


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
RUN_HEADERS = ["run", "started", "profile", "seed", "targets", "examples", "findings", "status"]


def _finding_cells(item: _Finding) -> list[str]:
    row = item.row
    replay = row.get("last_replay_status") or "-"
    if row.get("last_replay"):
        replay = f"{replay} ({row['last_replay']})"
    return [item.id, str(row.get("status")), str(row.get("kind")), str(row.get("failure")),
            str(row.get("kernel")), str(row.get("oracle")), _pct(row.get("mismatch_ratio")),
            _pct(item.now_ratio()), str(row.get("times_seen")), str(row.get("first_seen")),
            str(row.get("last_seen")), replay]


def _run_cells(run: dict[str, Any]) -> list[str]:
    return [str(run["id"]), str(run.get("started")), str(run.get("profile")),
            str(run.get("seed")), ", ".join(map(str, run.get("targets") or [])),
            str(run.get("examples")), str(run.get("findings")), str(run.get("status"))]


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1300px; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #eee; }
img { max-width: 100%; border: 1px solid #ddd; }
pre { background: #f6f6f6; padding: 0.5em; white-space: pre-wrap; font-size: 0.85em; }
.open { color: #a00; } .fixed { color: #070; } .note { color: #666; }
"""


def write_report(store: CorpusStore, out_dir: str | Path, *, device: str = "cpu",
                 max_plots: int = DEFAULT_MAX_PLOTS) -> ReportFiles:
    """Write the report for `store` into `out_dir` (created; files in it replaced).
    max_plots: at most this many findings per target get error histograms and a line in the
    trend plot (open ones first, then the worst). Returns what was written. Raises
    KfuzzError when out_dir is not a writable directory or matplotlib is missing."""
    try:
        from kfuzz import plots
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
        slug = _slug(target)
        run_points, finding_points = _trend_points(target, items, runs, max_plots)
        trend = plots.ratio_trend(out / "plots" / f"trend-{slug}.png",
                                  f"{target}: mismatch ratio across runs and replays",
                                  run_points, finding_points)
        files.plots.append(trend)
        details_html, details_md = [], []
        for item in items[:max_plots]:
            errors = _recompute(item, device)
            if errors is not None:
                captions = {}
                for name, data in errors.items():
                    first = (item.now or {}).get(name, {}).get("message", "").split("\n")[0]
                    extra = f"; {data['nonfinite']} non-finite pairs not shown" \
                        if data["nonfinite"] else ""
                    captions[name] = f"now: {first}{extra}"
                    data["caption"] = captions[name]
                path = plots.error_histograms(
                    out / "plots" / f"errors-{slug}-{item.id}.png",
                    f"{target} {item.id}: {item.row['kernel']} vs {item.row['oracle']}, "
                    f"errors now (case replayed for this report)", errors)
                files.plots.append(path)
                item.plot = f"plots/{path.name}"
            details_html.append(_finding_html(item))
            details_md.append(_finding_md(item))
        skipped = len(items) - min(len(items), max_plots)
        note = f"{skipped} more finding(s) listed above without plots (--max-plots {max_plots})." \
            if skipped else ""
        table_rows = [_finding_cells(i) for i in items]
        html_parts.append(
            f'<section id="{html.escape(slug)}"><h2>{html.escape(target)}</h2>'
            f'<img src="plots/{trend.name}" alt="{html.escape(target)} mismatch ratio trend">'
            f"{_html_table(FINDING_HEADERS, table_rows)}"
            + (f'<p class="note">{html.escape(note)}</p>' if note else "")
            + "".join(details_html) + "</section>"
        )
        md_parts.append(
            f"## {target}\n\n![{target} mismatch ratio trend](plots/{trend.name})\n\n"
            f"{_md_table(FINDING_HEADERS, table_rows)}\n\n" + (f"{note}\n\n" if note else "")
            + "\n".join(details_md)
        )
    header = _summary_line(store, by_target, runs)
    run_rows = [_run_cells(r) for r in runs]
    nav = " · ".join(f'<a href="#{html.escape(_slug(t))}">{html.escape(t)}</a>' for t in by_target)
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>kfuzz report</title><style>{STYLE}</style></head><body>"
        f"<h1>kfuzz report</h1><p>{html.escape(header)}</p>"
        + (f"<p>{nav}</p>" if nav else "<p>No findings.</p>")
        + "<h2>Runs</h2>" + (_html_table(RUN_HEADERS, run_rows) if run_rows else "<p>none</p>")
        + "".join(html_parts) + "</body></html>\n"
    )
    markdown = (
        f"# kfuzz report\n\n{header}\n\n## Runs\n\n"
        + (_md_table(RUN_HEADERS, run_rows) if run_rows else "none") + "\n\n"
        + ("\n".join(md_parts) if md_parts else "No findings.\n")
    )
    files.html.write_text(page, encoding="utf-8")
    files.markdown.write_text(markdown, encoding="utf-8")
    return files


def _summary_line(store: CorpusStore, by_target: dict[str, list[_Finding]],
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


def _finding_title(item: _Finding) -> str:
    row = item.row
    return (f"{item.id}: {row.get('kernel')} vs {row.get('oracle')}, {row.get('status')}, "
            f"{row.get('kind')} {row.get('failure')}, stored ratio {_pct(row.get('mismatch_ratio'))}")


def _finding_html(item: _Finding) -> str:
    esc = html.escape
    row = item.row
    parts = [f'<h3 id="f-{esc(item.id)}" class="{esc(str(row.get("status")))}">'
             f"{esc(_finding_title(item))}</h3>",
             f"<pre>case {esc(json.dumps(row.get('case')))}"
             + (f"\ncomparator {esc(json.dumps(row.get('comparator')))}"
                if row.get("comparator") else "") + "</pre>"]
    points = _worst_points(row)
    if points:
        parts.append("<p>Worst points when stored:</p>" + _html_table(POINT_HEADERS, points))
    if item.plot:
        parts.append(f'<img src="{esc(item.plot)}" alt="error histograms of {esc(item.id)}">')
    elif item.now_error:
        parts.append(f'<p class="note">Not replayed for this report: {esc(item.now_error)}</p>')
    return "".join(parts)


def _finding_md(item: _Finding) -> str:
    row = item.row
    lines = [f"### {_finding_title(item)}\n", f"case `{json.dumps(row.get('case'))}`\n"]
    points = _worst_points(row)
    if points:
        lines.append("Worst points when stored:\n\n" + _md_table(POINT_HEADERS, points) + "\n")
    if item.plot:
        lines.append(f"![error histograms of {item.id}]({item.plot})\n")
    elif item.now_error:
        lines.append(f"Not replayed for this report: {item.now_error}\n")
    return "\n".join(lines)

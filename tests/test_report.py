"""`kfuzz report`: HTML page, Markdown summary and PNG plots, checked in headless Chromium."""

from __future__ import annotations

import datetime as dt
import math
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kfuzz.cli.app import main
from kfuzz.judge.comparator import Comparator
from kfuzz.present.report import FindingItem, trend_data
from kfuzz.present.rerun import element_errors
from kfuzz.present.runs import run_budget, run_seed
from kfuzz.store.corpus import CorpusStore

FIND = ["--compare", "exact", "--max-ratio", "0.005", "--max-examples", "20"]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def _png_text(path: Path) -> str:
    """What the PNG says it shows (its Description, which kfuzz.present.plots writes)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.text.get("Description", "")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A corpus with findings from two runs (the second with a budget), a replay and a
    substitute replay with another kernel, and its report."""
    pytest.importorskip("matplotlib")
    base = tmp_path_factory.mktemp("report")
    db = base / "corpus.db"
    for seed, extra in (("1", []), ("2", ["--budget", "60"])):
        assert main(["run", "ops.rmsnorm", "ops.softmax", *FIND, "--seed", seed, *extra,
                     "--db", str(db), "--json"]) == 1
    assert main(["replay", "--db", str(db), "--json"]) == 1
    assert main(["replay", "--db", str(db), "--target", "ops.softmax", "--kernel",
                 "eager_fp32", "--json"]) in (0, 1)
    store = CorpusStore(db)
    replays = store.db["replays"].count
    store.close()
    out = base / "out"
    assert main(["report", "--db", str(db), "--out", str(out)]) == 0
    return {"db": db, "out": out, "replays": replays}


@pytest.mark.slow
def test_page_and_summary_show_every_target_with_loadable_plots(report):
    out = report["out"]
    page = (out / "index.html").read_text()
    summary = (out / "summary.md").read_text()
    for target in ("ops.rmsnorm", "ops.softmax"):
        assert f'<section id="{target}"><h2>{target}</h2>' in page
        assert f"## {target}\n" in summary
        assert f'src="plots/trend-{target}.png"' in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert sources and sources == re.findall(r"!\[[^\]]*\]\(([^)]+)\)", summary)
    errors = [s for s in sources if "/errors-" in s]
    assert len(errors) >= 2  # at least one finding per target has its histograms
    for source in sources:
        width, height = _png_size(out / source)
        assert width >= 600 and height >= 300
    # Both runs are in the runs table; every finding got its replay.
    runs = re.search(r"## Runs\n\n(.*?)\n\n", summary, re.S).group(1).splitlines()
    assert len(runs) == 2 + 2
    assert "fail (" in summary and "Worst points when stored" in summary


@pytest.mark.slow
def test_runs_table_shows_each_runs_seed_budget_and_examples(report):
    summary = (report["out"] / "summary.md").read_text()
    lines = re.search(r"## Runs\n\n(.*?)\n\n", summary, re.S).group(1).splitlines()
    headers = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = [dict(zip(headers, (c.strip() for c in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]
    store = CorpusStore(report["db"])
    stored = store.runs()
    store.close()
    assert [r["seed"] for r in rows] == ["1", "2"]
    assert [r["examples"] for r in rows] == [str(run["examples"]) for run in stored]
    assert all(int(r["examples"]) > 0 for r in rows)
    assert rows[0]["budget"] == "-"  # bounded by --max-examples only
    # --budget 60: in-process runs store pytest's argv, so this comes from the share of the
    # budget each target's stored result records ("60 s" from argv on a real command line).
    assert rows[1]["budget"].startswith("60 s") or re.fullmatch(
        r"[\d.]+ s each|ops\.rmsnorm [\d.]+ s, ops\.softmax [\d.]+ s", rows[1]["budget"]), \
        rows[1]["budget"]


@pytest.mark.parametrize(
    "run, expected",
    [
        ({"argv": ["run", "t", "--budget", "30"]}, "30 s"),
        ({"argv": ["run", "t", "--budget=90.5"]}, "90.5 s"),
        ({"argv": ["run", "t", "--bud", "12"]}, "12 s"),  # argparse takes abbreviations
        ({"argv": ["run", "t", "--max-examples", "9"]}, "-"),
        ({"argv": [], "results": [{"target": "a", "budget": 29.0}]}, "29 s"),
        ({"argv": [], "results": [{"target": "a", "budget": 15.0},
                                  {"target": "b", "budget": 15.0}]}, "15 s each"),
        ({"argv": ["run", "--budget", "30"],
          "results": [{"target": "a", "budget": 14.479}, {"target": "b", "budget": 15.0}]},
         "30 s (a 14.5 s, b 15 s)"),
        ({"argv": ["run", "--budget", "30"], "results": [{"target": "a", "budget": 29.0}]},
         "30 s"),
    ],
    ids=["argv", "argv-equals", "argv-abbreviated", "none", "results-one", "results-same",
         "argv-and-shares", "argv-one-target"],
)
def test_run_budget_reads_the_stored_results_then_argv(run, expected):
    assert run_budget(run) == expected


def test_run_seed_falls_back_to_the_campaigns_seeds():
    assert run_seed({"seed": 7, "results": [{"target": "a", "seed": 8}]}) == "7"
    assert run_seed({"seed": None, "results": [{"target": "a", "seed": 8},
                                               {"target": "b", "seed": 8},
                                               {"target": "c", "skipped": "no triton"}]}) == "8"
    assert run_seed({"seed": None, "results": []}) == "-"


def test_trend_has_one_run_line_per_kernel_and_substitute_replays_under_theirs(report):
    out = report["out"]
    text = _png_text(out / "plots" / "trend-ops.softmax.png")
    assert "runs with eager_lowp: " in text
    # The substitute replays are plotted under eager_fp32, not joined to eager_lowp's lines.
    assert re.search(r"finding \w{12} with eager_fp32: replay \d", text), text
    store = CorpusStore(report["db"])
    substitutes = [r for r in store.replays() if r["kernel"] == "eager_fp32"]
    store.close()
    assert substitutes and all(r["substitute"] for r in substitutes)


def test_report_reads_without_recording_replays(report):
    store = CorpusStore(report["db"])
    assert store.db["replays"].count == report["replays"]
    store.close()


def test_report_of_a_corpus_with_an_unrunnable_finding(kfuzz, db_path, tmp_path):
    pytest.importorskip("matplotlib")
    store = CorpusStore(db_path)
    store.db.execute("insert into findings (fingerprint, target, kernel, oracle, \"case\", "
                     "status, kind, times_seen) values ('ab', 'ops.gone', 'k', 'o', '{}', "
                     "'open', 'shrunk', 1)")
    store.close()
    res = kfuzz("report", "--db", db_path, "--out", tmp_path / "r")
    assert res.code == 0, res.err
    page = (tmp_path / "r" / "index.html").read_text()
    assert "Not replayed for this report: no target &#x27;ops.gone&#x27;" in page


def test_report_of_an_empty_corpus(kfuzz, db_path, tmp_path):
    pytest.importorskip("matplotlib")
    CorpusStore(db_path).close()
    res = kfuzz("report", "--db", db_path, "--out", tmp_path / "r")
    assert res.code == 0
    assert res.out.startswith(f"wrote {tmp_path / 'r' / 'index.html'} and ")
    assert "<p>No findings.</p>" in (tmp_path / "r" / "index.html").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--out", "{file}"], "kfuzz: error: --out '{file}' is a file; pass a directory"),
        (["--out", "{tmp}/r", "--db", "{tmp}/none.db"],
         "kfuzz: error: no corpus at '{tmp}/none.db'; pass --db PATH"),
        (["--out", "{tmp}/r", "--max-plots", "-1"], "kfuzz: error: --max-plots -1 must be 0"),
    ],
    ids=["out-is-a-file", "no-corpus", "negative-max-plots"],
)
def test_bad_report_arguments_are_one_line_exit_2(kfuzz, db_path, tmp_path, argv, message):
    pytest.importorskip("matplotlib")
    CorpusStore(db_path).close()
    file = tmp_path / "file"
    file.write_text("")
    fill = {"file": file, "tmp": tmp_path}
    argv = [a.format(**fill) for a in argv]
    if "--db" not in argv:
        argv += ["--db", str(db_path)]
    res = kfuzz("report", *argv)
    assert res.code == 2
    assert res.err.startswith(message.format(**fill)), res.err
    assert res.err.count("\n") == 1


def test_missing_matplotlib_is_one_line_exit_2(kfuzz, db_path, tmp_path, monkeypatch):
    CorpusStore(db_path).close()
    import kfuzz.present as package  # a `plots` imported by an earlier test is its attribute

    monkeypatch.delitem(sys.modules, "kfuzz.present.plots", raising=False)
    monkeypatch.delattr(package, "plots", raising=False)
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, name, None)  # None makes `import` raise ImportError
    res = kfuzz("report", "--db", db_path, "--out", tmp_path / "r")
    assert res.code == 2
    assert res.err == ("kfuzz: error: kfuzz report draws its plots with matplotlib, which is "
                       "not installed; pip install 'kfuzz[report]'\n")


def test_element_errors_of_a_bf16_output():
    actual = torch.tensor([1.0, 1.0078125, 2.0, math.nan, 0.5], dtype=torch.bfloat16)
    expected = torch.tensor([1.0, 1.0, 2.03125, 1.0, 0.0], dtype=torch.float64)
    errors = element_errors(actual, expected, Comparator(mode="exact"))
    assert errors["abs"].tolist() == [0.0, 0.0078125, 0.03125, 0.5]
    assert errors["rel"].tolist() == [0.0, 0.0078125, 0.03125 / 2.03125]  # e = 0 left out
    # BF16 spacing: 2**-7 on [1, 2), 2**-6 on [2, 4), the subnormal step at 0.
    assert errors["ulp"].tolist() == [0.0, 1.0, 2.0, 0.5 / 2.0**-133]
    assert errors["nonfinite"] == 1
    assert errors["bounds"] == {"abs": None, "rel": None, "ulp": None}
    assert element_errors(actual, expected, Comparator())["bounds"] == \
        {"abs": 1e-5, "rel": 1.6e-2, "ulp": None}
    assert element_errors(actual, expected, Comparator(mode="ulp", ulp=2))["bounds"]["ulp"] == 2


def test_element_errors_against_an_unrounded_reference():
    actual = torch.tensor([1.0], dtype=torch.bfloat16)
    expected = torch.tensor([1.001], dtype=torch.float64)
    rounded = element_errors(actual, expected, Comparator(mode="exact"))
    raw = element_errors(actual, expected, Comparator(mode="exact", round_expected=False))
    assert rounded["abs"].tolist() == [0.0]  # 1.001 rounds to 1.0 in BF16
    assert raw["abs"][0] == pytest.approx(0.001)


# -- plots a person can read ------------------------------------------------------------------

COMPACT_TICK = re.compile(r"^(\d+(\.\d+)?|\d(\.\d)?e-?\d+)$")  # "0.015", "1100", "2.5e-5"


def _labels(ax):
    """The x tick labels drawn inside the axis' view, with their boxes on the canvas."""
    low, high = sorted(ax.get_xlim())
    return [(t.get_text(), t.get_window_extent()) for t in ax.get_xticklabels()
            if t.get_visible() and t.get_text() and low <= t.get_position()[0] <= high]


def _assert_readable_log_axis(ax):
    assert ax.get_xscale() == "log"
    labels = _labels(ax)
    assert len(labels) >= 2, labels
    for text, _ in labels:
        assert COMPACT_TICK.match(text) and len(text) <= 6, text
    boxes = sorted((box for _, box in labels), key=lambda b: b.x0)
    for left, right in zip(boxes, boxes[1:], strict=False):
        assert left.x1 + 2 <= right.x0, [t for t, _ in labels]  # 2 px apart at least
    # No bar touches the frame: the bars sit inside the view with a margin, in log terms.
    low, high = (math.log10(v) for v in ax.get_xlim())
    bars = [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches]
    span = high - low
    assert math.log10(min(b[0] for b in bars)) - low >= 0.03 * span
    assert high - math.log10(max(b[1] for b in bars)) >= 0.03 * span


@pytest.mark.parametrize(
    "low, high",
    [(1.5e-4, 4.9e-4), (1e-6, 1e-2), (0.03, 0.031), (5.0, 5.0), (1e-9, 3e3), (0.8, 1.2),
     (700.0, 2800.0), (2.0e-8, 1.1e-7)],
    ids=["narrow", "decades", "nearly-one", "one-value", "twelve-decades", "around-1",
         "hundreds", "tiny"],
)
def test_error_histograms_have_log_axes_with_labels_that_do_not_touch(low, high):
    plots = pytest.importorskip("kfuzz.present.plots")
    import numpy as np

    values = np.geomspace(low, high, 300)
    errors = {"y": {"abs": np.concatenate([values, np.zeros(5)]), "rel": values * 0.9,
                    "ulp": values * 1e4 + 41,  # past MAX_INTEGER_ULP_BINS: log bins too
                    "bounds": {"abs": None, "rel": None, "ulp": None}, "caption": "c"}}
    fig = plots.error_figure("t", errors)
    fig.draw_without_rendering()
    axes = [ax for ax in fig.get_axes() if ax.patches]
    assert len(axes) == 3
    for ax in axes:
        _assert_readable_log_axis(ax)
    assert "the 5 exact elements are not shown" in axes[0].get_xlabel()


def test_a_bound_far_from_the_errors_is_named_not_drawn_and_a_near_one_is_drawn():
    plots = pytest.importorskip("kfuzz.present.plots")
    import numpy as np

    errors = {"y": {"abs": np.linspace(2.0, 4.0, 50), "rel": np.linspace(0.01, 0.05, 50),
                    "ulp": np.arange(5.0), "bounds": {"abs": 1e-5, "rel": 0.016, "ulp": None}}}
    fig = plots.error_figure("t", errors)
    fig.draw_without_rendering()
    abs_ax, rel_ax, ulp_ax = fig.get_axes()
    # atol 1e-5 is five decades below errors of 2 to 4: the axis stays on the errors.
    assert abs_ax.get_xlim()[0] > 1
    assert "atol 1e-5 is off the axis, to the left" in abs_ax.get_xlabel()
    _assert_readable_log_axis(abs_ax)
    (line,) = rel_ax.get_lines()
    assert line.get_xdata()[0] == 0.016
    assert [t.get_text() for t in rel_ax.get_legend().get_texts()] == ["rtol 0.016"]
    # Integer ULP distances: a bar per distance, integer ticks.
    assert ulp_ax.get_xscale() == "linear"
    ticks = [t.get_text() for t in ulp_ax.get_xticklabels() if t.get_text()]
    assert ticks and all(t.lstrip("−-").isdigit() for t in ticks), ticks


def test_tick_text_is_short():
    plots = pytest.importorskip("kfuzz.present.plots")
    assert [plots.tick_text(v) for v in (0.00015, 0.00049, 1e-4, 2.5e-5, 0.015, 2.5, 1100, 3e6)] \
        == ["1.5e-4", "4.9e-4", "1e-4", "2.5e-5", "0.015", "2.5", "1100", "3e6"]


def test_exact_outputs_say_so_and_nothing_else():
    plots = pytest.importorskip("kfuzz.present.plots")
    import numpy as np

    zeros = np.zeros(4)
    fig = plots.error_figure("t", {"y": {"abs": zeros, "rel": zeros, "ulp": zeros,
                                         "bounds": {}}})
    for ax in fig.get_axes():
        assert [t.get_text() for t in ax.texts] == ["all 4 elements exact"]
        assert not ax.patches and not ax.get_xticks().size


def test_failure_panel_shows_a_stored_message_as_written():
    plots = pytest.importorskip("kfuzz.present.plots")
    fig = plots.failure_figure("t", "error: ValueError: costs $5 and $x^{", "tail\x1b[31m")
    fig.draw_without_rendering()  # a "$" is not parsed as mathtext
    assert [t.get_text() for t in fig.texts] == [
        "t", "error: ValueError: costs $5 and $x^{", "tail?[31m"]


def _points(*rows):
    plots = pytest.importorskip("kfuzz.present.plots")
    t0 = dt.datetime(2026, 1, 1)
    return [plots.TrendPoint(t0 + dt.timedelta(hours=h), *rest) for h, *rest in rows]


def test_trend_draws_one_run_line_per_kernel_and_keeps_unjudged_off_the_ratio_axis():
    plots = pytest.importorskip("kfuzz.present.plots")
    from matplotlib.dates import date2num

    t0 = dt.datetime(2026, 1, 1)
    hours = [t0 + dt.timedelta(hours=h) for h in range(6)]
    runs = {"eager_lowp": [(hours[0], 0.5), (hours[2], 0.25)],
            "eager_fp32": [(hours[1], 0.001)]}
    points = _points((0, "eager_lowp", "aaa", "seen", 0.5),
                     (3, "eager_lowp", "aaa", "replay", 0.5),
                     (4, "eager_fp32", "aaa", "replay", 0.0),  # a substitute replay
                     (1, "mine.py:k", "bbb", "seen", None, "contract"),
                     (3, "mine.py:k", "bbb", "replay", None, "contract"),
                     (5, "mine.py:k", "ccc", "seen", None, "crash"))
    fig = plots.trend_figure("t", runs, points)
    (ax,) = [a for a in fig.get_axes() if a.get_ylabel() == "mismatch ratio (%)"]
    (strip,) = [a for a in fig.get_axes() if a is not ax]
    run_lines = [line for line in ax.get_lines() if line.get_marker() == "s"]
    assert len(run_lines) == 2  # one per (target, kernel), not one through every run
    by_x = {tuple(line.get_xdata()): line for line in run_lines}
    lowp = by_x[tuple(date2num([hours[0], hours[2]]))]
    fp32 = by_x[tuple(date2num([hours[1]]))]
    assert list(lowp.get_ydata()) == [50.0, 25.0] and list(fp32.get_ydata()) == [0.1]
    assert lowp.get_color() != fp32.get_color()
    # The ratio axis holds only judged points: nothing of bbb or ccc, nothing at 100%.
    plotted = [y for c in ax.collections for _, y in c.get_offsets()]
    plotted += [y for line in ax.get_lines() for y in line.get_ydata()]
    assert 100.0 not in plotted and sorted(set(plotted)) == [0.0, 0.1, 25.0, 50.0]
    assert [t.get_text() for t in strip.get_yticklabels()] == ["contract", "crash"]
    assert sum(len(c.get_offsets()) for c in strip.collections) == 3
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"eager_lowp", "eager_fp32", "mine.py:k"} <= set(legend)


def test_trend_points_group_runs_by_kernel_and_skip_what_ran_no_campaign():
    runs = [
        {"started": "2026-01-01T00:00:00+00:00", "results": [
            {"target": "t", "kernel": "a", "peak_ratio": 0.5},
            {"target": "t", "kernel": "a", "peak_ratio": 0.75},  # a seed shard: the worst
            {"target": "t", "kernel": "b", "peak_ratio": 0.0},
            {"target": "u", "kernel": "a", "peak_ratio": 1.0},
            {"target": "t", "skipped": "needs triton"},
            {"target": "t", "state": "failed", "failed": "boom"}]},
        {"started": "2026-01-02T00:00:00+00:00", "results": [
            {"target": "t", "state": "run", "kernel": "a", "peak_ratio": 0.25}]},
    ]
    finding = FindingItem({"fingerprint": "f" * 64, "kernel": "a", "failure": "contract",
                        "mismatch_ratio": 1.0, "last_seen": "2026-01-01T01:00:00+00:00"},
                       [{"at": "2026-01-02T01:00:00+00:00", "kernel": "b", "status": "pass",
                         "mismatch_ratio": 0.0},
                        {"at": "2026-01-02T02:00:00+00:00", "kernel": "a", "status": "fail",
                         "mismatch_ratio": None, "error": "Contract: writes-input: ..."}])
    lines, points = trend_data("t", [finding], runs, 8)
    day = dt.datetime(2026, 1, 1)
    assert lines == {"a": [(day, 0.75), (day + dt.timedelta(days=1), 0.25)], "b": [(day, 0.0)]}
    assert [(p.kernel, p.source, p.ratio, p.what) for p in points] == [
        ("a", "seen", None, "contract"), ("b", "replay", 0.0, None),
        ("a", "replay", None, "contract")]


def test_contract_and_crash_findings_show_as_what_they_are(kfuzz, db_path, tmp_path):
    pytest.importorskip("matplotlib")
    run = kfuzz("run", "ops.softmax", "--kernel", "tests.faulty_kernels:writes_input",
                "--max-examples", "10", "--shrink-seconds", "0.5", "--seed", "2",
                "--db", db_path, "--json")
    assert run.code == 1, run.err
    (contract,) = [f for f in run.json()["findings"] if f["failure"] == "contract"]
    assert kfuzz("replay", "--db", db_path, "--id", contract["id"]).code == 1
    store = CorpusStore(db_path)
    # A crash finding as a run with --isolate stores it; the report must not rerun it.
    store.db.execute(
        "insert into findings (fingerprint, target, kernel, oracle, \"case\", status, kind, "
        "failure, error, signal, mismatch_ratio, times_seen, last_seen) values ('cd', "
        "'ops.softmax', 'tests.faulty_kernels:segfault_wide', 'fp64', '{}', 'open', 'shrunk', "
        "'crash', 'Crash: worker killed by SIGSEGV; stderr: Fatal Python error', 'SIGSEGV', "
        "1.0, 1, '2026-01-01T00:00:00+00:00')")
    store.close()
    out = tmp_path / "r"
    res = kfuzz("report", "--db", db_path, "--out", out, "--max-plots", "20")
    assert res.code == 0, res.err
    page = (out / "index.html").read_text()
    breach = ("contract breach: writes-input: kernel &#x27;tests.faulty_kernels:writes_input"
              "&#x27; wrote into its input")
    assert f'<p class="failure">{breach}' in page
    assert '<p class="failure">crash: killed by SIGSEGV</p>' in page
    assert "Not replayed for this report" not in page  # not rerun: nothing to fail
    assert "<td>- (contract)</td>" in page and "<td>- (crash)</td>" in page
    panel = _png_text(out / "plots" / f"errors-ops.softmax-{contract['id']}.png")
    assert panel.splitlines()[1].startswith("contract breach: writes-input: kernel ")
    assert "exact" not in panel
    crash = _png_text(out / "plots" / "errors-ops.softmax-cd.png")
    assert crash.splitlines()[1] == "crash: killed by SIGSEGV"
    assert "Fatal Python error" in crash
    trend = _png_text(out / "plots" / "trend-ops.softmax.png")
    kernel = "tests.faulty_kernels:writes_input"
    assert f"finding {contract['id']} with {kernel}: seen contract, no mismatch ratio" in trend
    assert f"finding {contract['id']} with {kernel}: replay contract, no mismatch ratio" in trend
    assert f"finding {contract['id']} with {kernel}: seen 100%" not in trend
    assert "finding cd with tests.faulty_kernels:segfault_wide: seen crash" in trend


# -- the page in a real browser ----------------------------------------------------------------

CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-loaded", String(loaded));
});
</script></body>"""


def _chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def _browse(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180,
    )


def test_page_renders_in_headless_chromium_with_every_plot_loaded(report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("headless Chromium not found (Debian: apt-get install -y chromium)")
    out = report["out"]
    page = (out / "index.html").read_text()
    expected_images = page.count("<img ")
    # The page has no script of its own; a copy with a tiny one reports on its images.
    check = out / "check.html"
    check.write_text(page.replace("</body>", CHECK_SCRIPT))
    dom = _browse(browser, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom",
                  check.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert f'data-images="{expected_images}"' in body, body
    assert f'data-loaded="{expected_images}"' in body, body

    shot = tmp_path / "report.png"
    res = _browse(browser, tmp_path / "profile", "--window-size=1280,2200",
                  f"--screenshot={shot}", (out / "index.html").as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    shutil.copyfile(shot, out / "screenshot.png")  # kept beside the report for a person to see
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2200, 1280)
    # matplotlib's first colour (C0, #1f77b4) fills the histogram bars and nothing else on the
    # page uses it: many such pixels mean the plots were drawn, not broken-image icons (which
    # leave none; shrunk cases of a few elements draw thin bars, a few thousand pixels).
    c0 = torch.tensor([0x1F, 0x77, 0xB4], dtype=torch.float64) / 255
    close = (torch.from_numpy(pixels.astype("float64")) - c0).abs().amax(-1) < 0.05
    assert int(close.sum()) > 2000

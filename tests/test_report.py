"""`kfuzz report`: HTML page, Markdown summary and PNG plots, checked in headless Chromium."""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kfuzz.cli import main
from kfuzz.compare import Comparator
from kfuzz.corpus import CorpusStore
from kfuzz.report import element_errors

FIND = ["--compare", "exact", "--max-ratio", "0.005", "--max-examples", "20"]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A corpus with findings from two runs and one replay, and its report."""
    pytest.importorskip("matplotlib")
    base = tmp_path_factory.mktemp("report")
    db = base / "corpus.db"
    for seed in ("1", "2"):
        assert main(["run", "ops.rmsnorm", "ops.softmax", *FIND, "--seed", seed,
                     "--db", str(db), "--json"]) == 1
    assert main(["replay", "--db", str(db), "--json"]) == 1
    store = CorpusStore(db)
    replays = store.db["replays"].count
    store.close()
    out = base / "out"
    assert main(["report", "--db", str(db), "--out", str(out)]) == 0
    return {"db": db, "out": out, "replays": replays}


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
    import kfuzz as package

    monkeypatch.delitem(sys.modules, "kfuzz.plots", raising=False)
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
    # page uses it: many such pixels mean the plots were drawn, not broken-image icons.
    c0 = torch.tensor([0x1F, 0x77, 0xB4], dtype=torch.float64) / 255
    close = (torch.from_numpy(pixels.astype("float64")) - c0).abs().amax(-1) < 0.05
    assert int(close.sum()) > 5000

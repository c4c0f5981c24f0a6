"""bench.library_overhead in --quick mode: it compares the cases kfuzz ran with as many plain
loop cases, writes a result bench/render.py turns into its section, and refuses a bad --shapes
with one line (slow: about 15 s; `pytest -m slow`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _bench(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", f"bench.{module}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)


def test_quick_run_measures_and_renders(tmp_path):
    pytest.importorskip("onnxruntime")
    results = tmp_path / "results"
    done = _bench("library_overhead", "--quick", "--runs", "1", "--shapes", "1x8,3x40",
                  "--out", str(results / "library_overhead.json"))
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((results / "library_overhead.json").read_text())
    assert doc["command"] == "python -m bench.library_overhead --quick --runs 1 --shapes 1x8,3x40"
    assert doc["machine"]["torch_threads"] == 1
    assert [r["shape"] for r in doc["shapes"]] == [[1, 8], [3, 40]]
    for row in doc["shapes"]:
        assert row["failed_cases"] == 0 and row["plain_failed_cases"] == 0
        assert row["kfuzz_cases_per_s"] > 0 and row["plain_cases_per_s"] > 0
        assert row["ratio_to_plain_loop"] == pytest.approx(row["ratios_to_plain_loop"][0])
    out = tmp_path / "BENCHMARKS.md"
    assert _bench("render", "--results", str(results), "--out", str(out)).returncode == 0
    text = out.read_text()
    assert "## 1b. Library overhead" in text
    assert f"**{doc['shapes'][0]['ratio_to_plain_loop']:.3f}**" in text


def test_bad_shapes_are_refused_with_one_line():
    done = _bench("library_overhead", "--shapes", "24by1024")
    assert done.returncode == 2
    assert "'24by1024' is not ROWSxCOLS" in done.stderr.strip().splitlines()[-1]

"""Every benchmark script runs in --quick mode and writes a result that bench/render.py turns
into BENCHMARKS.md sections (slow: about a minute; `pytest -m slow`)."""

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


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results")
    runs = [
        ("overhead", "--quick", "--runs", "1"),
        ("smallest", "--quick", "--fault", "gather_negative", "--fault", "window_off_by_one"),
        ("bug_finding", "--quick", "--budget", "3", "--fault", "gather_negative",
         "--smallest", str(out / "smallest.json")),
        ("corpus_scale", "--quick"),
        ("draws", "--quick", "--target", "faults.window_attn"),
    ]
    for module, *args in runs:
        done = _bench(module, *args, "--out", str(out / f"{module}.json"))
        assert done.returncode == 0, f"bench.{module}: {done.stderr[-2000:]}"
    return out


def _load(results: Path, name: str) -> dict:
    return json.loads((results / f"{name}.json").read_text())


def test_every_result_says_how_it_was_made(results):
    for name in ("overhead", "smallest", "bug_finding", "corpus_scale", "draws"):
        doc = _load(results, name)
        assert doc["mode"] == "quick"
        assert doc["command"].startswith(f"python -m bench.{name} --quick")
        assert "--out" not in doc["command"]
        assert doc["machine"]["torch_threads"] == 1


def test_overhead_compares_the_same_cases(results):
    doc = _load(results, "overhead")
    for cls in doc["classes"].values():
        for row in cls["by_batch"]:
            assert row["failed_cases"] == 0
            assert row["kfuzz_cases_per_s"] > 0 and row["hand_cases_per_s"] > 0
            assert row["plain_cases_per_s"] > 0
            assert row["ratio"] == pytest.approx(row["ratios"][0])
            assert row["ratio_to_plain_loop"] == pytest.approx(row["ratios_to_plain_loop"][0])
    assert [r["batch"] for r in doc["classes"]["small"]["by_batch"]] == ["auto", 1]
    assert doc["engine"]["bare_given_integer_us"] > 0


def test_smallest_and_bug_finding_agree_on_the_smallest_case(results):
    smallest = {f["fault"]: f for f in _load(results, "smallest")["faults"]}
    assert smallest["gather_negative"]["size"] == 130
    assert smallest["window_off_by_one"]["size"] == 5
    (row,) = _load(results, "bug_finding")["faults"]
    assert row["fixed"]["detected"] is False  # production index sets have no padding
    assert row["kfuzz"]["detected"] == 1
    assert row["smallest_known"]["size"] <= 130
    assert row["kfuzz_runs"][0]["reference_passes"] is True


def test_detect_only_ends_each_kfuzz_run_at_its_first_failing_case(tmp_path):
    out = tmp_path / "detection.json"
    done = _bench("bug_finding", "--quick", "--detect-only", "--seeds", "2", "--budget", "3",
                  "--fault", "gather_negative", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(out.read_text())
    (row,) = doc["faults"]
    assert doc["detect_only"] is True and len(row["kfuzz_runs"]) == 2
    for run in row["kfuzz_runs"]:
        assert run["detected"] and run["reference_passes"] is True
        assert "shrink" not in run and run["examples_run"] == run["examples"]


def test_corpus_scale_stores_and_replays_everything(results):
    doc = _load(results, "corpus_scale")
    assert doc["replay_statuses"] == {"fail": doc["replays"]}
    assert set(doc["store_seconds"]) == {"insert", "upsert", "upsert_one_by_one",
                                         "upsert_one_by_one_sync_normal"}


def test_fresh_rounds_draw_more_new_cases_than_hypothesis_rounds(results):
    (row,) = _load(results, "draws")["targets"]
    fresh, hypothesis = row["median"]["fresh"], row["median"]["hypothesis"]
    assert fresh["new_draw_share"] > 0.8 > 0.3 > hypothesis["new_draw_share"]
    assert all(r["cases"] == 400 for r in row["runs"])


def test_render_writes_every_section_from_the_results(results, tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    done = _bench("render", "--results", str(results), "--out", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for title in ("## 1. Overhead", "## New draws per case", "## 2a. Smallest", "## 2b. Bug-finding",
                  "## 3. Corpus"):
        assert title in text
    ratio = _load(results, "overhead")["classes"]["small"]["by_batch"][0]["ratio_to_plain_loop"]
    assert f"**{ratio:.3f}**" in text
    assert _bench("render", "--results", str(results), "--out", str(out),
                  "--check").returncode == 0
    out.write_text(text + "edited by hand\n")
    assert _bench("render", "--results", str(results), "--out", str(out),
                  "--check").returncode == 1


def test_startup_times_each_command_and_renders_its_section(tmp_path):
    results = tmp_path / "results"
    done = _bench("startup", "--quick", "--out", str(results / "startup.json"))
    assert done.returncode == 0, done.stderr[-2000:]
    doc = _load(results, "startup")
    assert doc["command"] == "python -m bench.startup --quick" and doc["runs"] == 1
    commands = doc["commands"]
    assert [c["command"] for c in commands.values()] == [
        "kfuzz corpus list --db ONE.db", "kfuzz --help", "kfuzz targets --names",
        'python -c "import sqlite_utils"', 'python -c "import torch"']
    assert all(len(c["seconds"]) == 1 and c["median_s"] > 0 for c in commands.values())
    assert doc["corpus_list_over_sqlite_utils"] == pytest.approx(
        commands["corpus_list"]["median_s"] / commands["import_sqlite_utils"]["median_s"],
        abs=1e-3)
    out = tmp_path / "BENCHMARKS.md"
    assert _bench("render", "--results", str(results), "--out", str(out)).returncode == 0
    text = out.read_text()
    assert "## 6. Start-up" in text and "`kfuzz targets --names`" in text
    assert f"{doc['corpus_list_over_sqlite_utils']:.2f}x" in text


def test_an_earlier_runs_smallest_case_counts_only_if_it_still_fails(tmp_path):
    from bench.bug_finding import _known, _still_fails
    from bench.seeded import by_name

    fault = by_name("gather_negative")
    failing = {"shape": [1, 1, 64], "index": {"n_rows": 1, "k": 2, "n_valid": 1, "window": 0,
               "ragged": False, "duplicates": False, "sorted": False, "out_of_range": False},
               "q": {"kind": "normal", "scale": 1.0}, "kv": {"kind": "normal", "scale": 1.0},
               "sink": {"kind": "normal", "scale": 1.0}, "seed": 0, "materialise": 2}
    passing = {**failing, "index": {**failing["index"], "k": 1}}
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"faults": [
        {"fault": "gather_negative", "smallest_known": {"size": 130, "source": "kfuzz shrink",
                                                         "case": failing}},
        {"fault": "drop_tail"}]}))
    assert set(_known(str(earlier))) == {"gather_negative"}
    assert _known("") == {} and _known(str(tmp_path / "missing.json")) == {}
    assert _still_fails(fault, failing) and not _still_fails(fault, passing)


def test_recorded_cases_are_read_by_fault_and_a_bad_record_ends_with_one_line(tmp_path, capsys):
    from bench.bug_finding import _recorded, _still_fails
    from bench.seeded import by_name

    recorded = _recorded(str(Path(__file__).parents[1] / "bench" / "known_cases.json"))
    assert set(recorded) == {"round_half_away"}
    fault = by_name("round_half_away")
    assert all(_still_fails(fault, entry["case"]) for entry in recorded["round_half_away"])
    assert _recorded("") == {} and _recorded(str(tmp_path / "missing.json")) == {}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cases": [{"fault": "drop_tail", "case": [1, 2]}]}))
    with pytest.raises(SystemExit) as stop:
        _recorded(str(bad))
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "\n" not in err and "bad.json" in err

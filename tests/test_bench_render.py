"""bench/render.py's statistics on stored results (fast: no benchmark runs)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.render import _twice_plus_ten, detection, five_run_misses

ROOT = Path(__file__).resolve().parents[1]


def _runs(examples: list[int | None]) -> list[dict]:
    return [{"detected": e is not None, "examples": e, "seconds_to_detect": 0.1,
             "reference_passes": True} for e in examples]


def _fault(kfuzz: list[int | None], uniform: list[int | None]) -> dict:
    def summary(runs: list[dict]) -> dict:
        hits = sorted(r["examples"] for r in runs if r["detected"])
        return {"detected": len(hits), "runs": len(runs),
                "median_examples": hits[len(hits) // 2] if hits else None}

    k, u = _runs(kfuzz), _runs(uniform)
    return {"fault": "f", "uniform_hit_rate": {"rate": 0.01}, "kfuzz": summary(k),
            "uniform": summary(u), "kfuzz_runs": k, "uniform_runs": u}


def test_five_run_misses_counts_resamples_that_miss_a_fifth():
    # Every resample of five runs: kfuzz 1 case against uniform's 100, or 50 against 100.
    assert five_run_misses(_fault([1] * 20, [100] * 20), resamples=200) == 0.0
    assert five_run_misses(_fault([50] * 20, [100] * 20), resamples=200) == 1.0
    # Half of kfuzz's runs need 10 cases, half 30; uniform always 100. A resample misses the
    # bar (20 cases) when three or more of its five runs needed 30: half of all resamples.
    mixed = five_run_misses(_fault([10, 30] * 10, [100] * 20), resamples=4000)
    assert 0.45 < mixed < 0.55
    # Uniform sampling that never detects: kfuzz wins every resample it detects in.
    assert five_run_misses(_fault([40] * 20, [None] * 20), resamples=200) == 0.0
    # A result without per-run records has nothing to resample.
    assert five_run_misses({"kfuzz": {}, "uniform": {}}) is None


def test_the_detection_section_shows_the_resampled_column():
    doc = json.loads((ROOT / "bench" / "results" / "detection.json").read_text())
    doc["faults"] = [_fault([10, 30] * 10, [100] * 20)]
    text = detection(doc)
    assert "five runs miss 1/5 (resampled)" in text
    row = [line for line in text.splitlines() if line.startswith("| f |")][0]
    assert row.rstrip(" |").endswith("%")


def test_twice_uniform_plus_ten_is_the_bar_on_every_fault():
    assert _twice_plus_ten(_fault([30] * 5, [10] * 5))        # 30 <= 2 * 10 + 10
    assert not _twice_plus_ten(_fault([31] * 5, [10] * 5))
    assert _twice_plus_ten(_fault([500] * 5, [None] * 5))      # uniform never detected
    assert not _twice_plus_ten(_fault([None] * 5, [3] * 5))    # kfuzz never detected

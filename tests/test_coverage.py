"""Coverage: every run says what its cases exercised (dtypes, size classes, special values,
index layouts) and names what the target offers that no case reached."""

from __future__ import annotations

from kfuzz.search.coverage import Coverage, coverage_line
from kfuzz.targets import registry


def _index(padding=None, **flags):
    spec = {"n_rows": 8, "k": 4, "n_valid": 4, "window": 0, "ragged": False,
            "duplicates": False, "sorted": False, "out_of_range": False, **flags}
    return {**spec, "padding": padding} if padding else spec


def test_counts_by_group_and_what_was_never_reached():
    cov = Coverage(lambda case: case["n"], max_numel=1024,
                   specials={"x": ("nan", "inf", "subnormal", "signed_zero")})
    cov.add({"dtype": "bfloat16", "n": 2, "shape": [1, 2],
             "x": {"kind": "normal", "scale": 1.0, "nonfinite": {"nan": 0.05, "inf": 0.0}},
             "index": _index(sorted=True)})
    cov.add({"dtype": "float16", "n": 512, "shape": [8, 64],
             "x": {"kind": "edge", "edge": "subnormal", "spread": 0}, "index": _index("holes")})
    doc = cov.to_dict()
    assert doc["cases"] == 2
    assert doc["dtype"] == {"bfloat16": 1, "float16": 1}
    assert doc["size"] == {"small": 1, "large": 1, "tile edge": 1}  # 64 is a tile edge
    assert doc["special"] == {"nan": 1, "subnormal": 1}
    assert doc["index"] == {"padding end": 1, "padding holes": 1, "sorted": 1}
    assert doc["never_reached"] == ["middle", "inf", "signed_zero", "padding split"]
    line = coverage_line(doc)
    assert line.startswith("2 cases; dtype bfloat16 1, float16 1; size small 1, large 1")
    assert line.endswith("never reached: middle, inf, signed_zero, padding split")


def test_a_batch_counts_as_its_cases_one_by_one():
    # A batch is its first case and copies with other seeds: counted once, `times` times.
    case = {"dtype": "float16", "shape": [3, 31], "seed": 7, "index": _index("split", window=2),
            "x": {"kind": "edge", "edge": "overflow", "spread": 0, "nonfinite": {"inf": 0.1}}}
    one_by_one, batched = (Coverage(registry.get("ops.rmsnorm").size, max_numel=1024,
                                    specials={"x": ("inf",)}) for _ in range(2))
    for seed in range(5):
        one_by_one.add({**case, "seed": seed})
    batched.add(case, times=5)
    assert batched.to_dict() == one_by_one.to_dict()
    assert batched.to_dict()["cases"] == 5 and batched.to_dict()["size"]["tile edge"] == 5


def test_a_run_prints_its_coverage_and_stores_it_and_the_report_shows_it(kfuzz, db_path,
                                                                        tmp_path):
    run = kfuzz("run", "ops.rmsnorm", "--kernel", "eager_fp32", "--max-examples", "120",
                "--seed", "2", "--db", db_path)
    line = next(x for x in run.out.splitlines() if x.strip().startswith("ops.rmsnorm: 120 cases"))
    assert "dtype " in line and "size " in line and "never reached:" in line
    doc = kfuzz("run", "ops.rmsnorm", "--kernel", "eager_fp32", "--max-examples", "40",
                "--seed", "3", "--db", db_path, "--json").json()
    cov = doc["campaigns"][0]["coverage"]
    assert cov["cases"] == doc["campaigns"][0]["examples"] == 40
    assert sum(cov["dtype"].values()) == 40
    assert set(cov["special"]) <= set(registry.get("ops.rmsnorm").specials["x"])
    out = tmp_path / "report"
    assert kfuzz("report", "--db", db_path, "--out", out).code == 0
    summary = (out / "summary.md").read_text()
    assert "## Coverage" in summary and summary.count("| ops.rmsnorm |") >= 2

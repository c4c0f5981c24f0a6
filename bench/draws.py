"""New draws per case: how many of a round's cases are independent draws, in a fresh round
(`kfuzz.search.fresh`: every example drawn anew) and in a round of Hypothesis' own generation (new
examples, up to five mutations of each, then hill-climbing on the feedback scores from half of
the round on).

For each target, rounds of `ROUND_EXAMPLES` examples as the search runs them (the same
strategy, settings and `feedback` scores through `hypothesis.target`, the target's default
kernel and oracle), without stopping on failures. Per round:
- new draws: cases that differ from the case before them in at least half of their fields
  (the seed not counted); a mutation or a hill-climbing step changes one or two;
- new configurations: cases whose fields (the seed not counted) no earlier case had.
A rare combination of independent choices is found in proportion to the new draws.

    python -m bench.draws [--quick] [--target NAME ...] [--seeds N]
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings, target
from hypothesis import seed as hypothesis_seed
from kfuzz.cases.materialise import stamp
from kfuzz.execute.executor import InProcessExecutor, Job
from kfuzz.execute.findings import canonical_json
from kfuzz.search.campaign import ROUND_EXAMPLES, feedback
from kfuzz.search.fresh import fresh_settings
from kfuzz.targets.registry import get

from bench import common, faults

TARGETS = ("ops.rmsnorm", "ops.rope", "faults.window_attn", "dsv4.sparse_attn")
faults.load()  # faults.window_attn: a plugin, not built in


def _fields(case: dict[str, Any]) -> dict[str, str]:
    return {k: canonical_json(v) for k, v in case.items() if k != "seed"}


def one_round(name: str, seed: int, fresh: bool) -> dict[str, Any]:
    """The cases of one round on target `name`, and how many are new draws."""
    t = get(name)
    ex = InProcessExecutor()
    cases: list[dict[str, Any]] = []

    def body(case: dict[str, Any]) -> None:
        case = stamp(case)
        cases.append(case)
        outcome = ex.evaluate([Job(name, t.default_kernel, t.default_oracle, case)])[0]
        for label, score in feedback(outcome).items():
            target(score, label=label)

    run = hypothesis_seed(seed)(settings(
        max_examples=ROUND_EXAMPLES, deadline=None, database=None,
        suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
        phases=[Phase.generate, Phase.target], **(fresh_settings() if fresh else {}),
    )(given(t.cases(t.max_numel))(body)))
    run()
    new_draws = 0
    seen: set[str] = set()
    new_configs = 0
    previous: dict[str, str] | None = None
    for case in cases:
        fields = _fields(case)
        if previous is not None:
            changed = sum(fields.get(k) != previous.get(k) for k in fields.keys() | previous.keys())
            new_draws += 2 * changed >= max(len(fields), 1)
        previous = fields
        key = canonical_json(fields)
        new_configs += key not in seen
        seen.add(key)
    n = max(len(cases) - 1, 1)
    return {"round": "fresh" if fresh else "hypothesis", "cases": len(cases),
            "new_draws": new_draws, "new_draw_share": round(new_draws / n, 3),
            "new_configurations": new_configs,
            "new_configuration_share": round(new_configs / max(len(cases), 1), 3)}


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = common.parser(__doc__, "draws.json")
    p.add_argument("--target", action="append", metavar="NAME", help="only this target")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="campaigns per target (default 3; 1 with --quick)")
    args = p.parse_args(argv)
    common.single_thread()
    seeds = args.seeds or (1 if args.quick else 3)
    rows = []
    for name in args.target or TARGETS:
        runs = [one_round(name, seed, fresh) for seed in range(seeds)
                for fresh in (True, False)]
        summary = {kind: {key: common.median([r[key] for r in runs if r["round"] == kind])
                          for key in ("new_draw_share", "new_configuration_share")}
                   for kind in ("fresh", "hypothesis")}
        print(f"{name:20} new draws per case: fresh {summary['fresh']['new_draw_share']:.2f}, "
              f"hypothesis {summary['hypothesis']['new_draw_share']:.2f}; new configurations: "
              f"fresh {summary['fresh']['new_configuration_share']:.2f}, "
              f"hypothesis {summary['hypothesis']['new_configuration_share']:.2f}", flush=True)
        rows.append({"target": name, "median": summary, "runs": runs})
    common.write(args.out, {"mode": "quick" if args.quick else "full", "seeds": seeds,
                            "round_examples": ROUND_EXAMPLES, "targets": rows})


if __name__ == "__main__":
    main()

"""`kfuzz run`: fuzz targets, store what fails (shrunk) in the corpus, print a summary."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from kfuzz.cli.parser import (
    EPILOG_EXIT,
    comparator_options,
    comparator_overrides,
    db_option,
    device_option,
    isolation_options,
    json_option,
    junit_option,
    plugin_option,
    positive_float,
    variant_options,
)
from kfuzz.present.summary import Progress, run_document, run_text
from kfuzz.settings import PROFILES

if TYPE_CHECKING:
    from kfuzz.cli.parser import Subcommands
    from kfuzz.run.runner import RunReport


def add_parser(sub: Subcommands) -> None:
    """Add the `run` command to the subcommands `sub`."""
    p = sub.add_parser(
        "run", help="fuzz targets and store findings",
        description="Fuzz targets: draw cases, run kernel and oracle, compare, shrink each "
        "distinct failure to a minimal case and store it (with the worst case seen) in the "
        "corpus.", epilog=EPILOG_EXIT)
    p.add_argument("target", nargs="*", metavar="TARGET",
                   help="target names (see kfuzz targets), each with its default kernel, or "
                   "TARGET@KERNEL for one of its kernels (ops.softmax@ort_softmax); each is a "
                   "campaign of its own")
    p.add_argument("--all", action="store_true",
                   help="fuzz every target (but the faults.* benchmark targets) with its "
                   "default kernel, and each ONNX Runtime and JAX kernel as TARGET@KERNEL "
                   "(skipped, saying which extra to install, where its library is missing; "
                   "with --kernel, the targets alone)")
    variant_options(p, "kernel variant name, or module:function with the target's signature",
                    "oracle name, a kernel variant name (kernel vs kernel), or module:function")
    comparator_options(p)
    p.add_argument("--max-examples", type=int, metavar="N",
                   help="cases to run per target, shrinking not counted (default: the profile's)")
    p.add_argument("--budget", type=positive_float, metavar="SECONDS",
                   help="wall-clock bound on the whole run (search, shrinking, storing; "
                   "counted from the start of the command), shared fairly across targets: each "
                   "gets its share of what is left when its turn comes, and its findings are "
                   "shrunk within it. A target that runs no case in its share is reported as "
                   "skipped, never as a pass")
    p.add_argument("--seed", type=int, metavar="S", help="seed for a reproducible run")
    p.add_argument("--profile", choices=list(PROFILES), default="dev",
                   help="ci: 100 examples, fixed seed; dev: 200 examples; "
                   "nightly: 100000 cases, batched, isolated kernels, 120 s to shrink each "
                   "finding (default dev)")
    device_option(p, "where kernels run; inputs are made on the CPU from the seed (default cpu)")
    p.add_argument("--batch", type=int, metavar="N",
                   help="N cases per Hypothesis example: the drawn case and N-1 copies with "
                   "derived seeds, to spread Hypothesis' overhead (default: the profile's)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="run targets (or seed shards of one target) in N processes writing "
                   "to one corpus (default 1)")
    p.add_argument("--ray", action="store_true",
                   help="run the --workers N shards as Ray tasks (one GPU each on cuda); this "
                   "process stores their findings (needs the ray extra)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to join, e.g. auto or HOST:6379 (implies --ray; default: "
                   "RAY_ADDRESS, else a cluster `ray start` made here, else a local instance)")
    p.add_argument("--shrink-seconds", type=positive_float, metavar="SECONDS",
                   help="time allowed to shrink each finding (default: the profile's, 20-120)")
    isolation_options(p)
    p.add_argument("--pin", action="append", metavar="FIELD=VALUE",
                   help="hold a case field at a JSON value while searching and shrinking, "
                   "e.g. --pin shape=[4,64,512] --pin dtype=bfloat16 (repeatable)")
    p.add_argument("--exclude", action="append", metavar="REGIME",
                   help="leave a value regime out of the search, e.g. --exclude overflow for a "
                   "kernel that does not promise to handle it (repeatable)")
    p.add_argument("--max-numel", type=int, metavar="N",
                   help="most elements in one input tensor of a case (default: the target's)")
    db_option(p)
    json_option(p, "print one JSON document, no progress")
    junit_option(p, "finding")
    plugin_option(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Fuzz targets, store findings, print a summary (and with --junit write JUnit XML, its
    path checked before the run). `args.argv` is recorded with the run, `args.started` (a
    time.time()) is when the command began, for --budget. Returns the run's exit status."""
    from kfuzz.cases.pins import parse_pins
    from kfuzz.run.plan import RunOptions
    from kfuzz.run.runner import run
    from kfuzz.search.campaign import CampaignConfig

    campaign = CampaignConfig(
        target="", kernel=args.kernel, oracle=args.oracle, comparator=comparator_overrides(args),
        profile=args.profile, max_examples=args.max_examples, budget=args.budget, seed=args.seed,
        device=args.device, batch=args.batch, max_numel=args.max_numel,
        shrink_seconds=args.shrink_seconds, pins=parse_pins(args.pin or []),
        exclude=args.exclude or (),
    )
    options = RunOptions(targets=args.target, all=args.all, campaign=campaign,
                         workers=args.workers, ray=args.ray, ray_address=args.ray_address,
                         isolate=args.isolate, case_timeout=args.case_timeout,
                         plugins=args.plugin or [])
    if args.junit:
        from kfuzz.present.junit import check_writable

        check_writable(args.junit)
    progress = Progress(not args.json)
    try:
        report = run(options, db=args.db, argv=args.argv, progress=progress,
                     on_done=progress.done, started=getattr(args, "started", None))
    finally:
        progress.done()
    print(json.dumps(run_document(report), indent=2) if args.json else run_text(report))
    if args.junit:
        _write_junit(args.junit, report)
    return report.exit_code()


def _write_junit(path: str, report: RunReport) -> None:
    """Write the JUnit XML of a run : its findings, and its skipped, failed and
    interrupted targets as testcases of their own."""
    from kfuzz.present.junit import JunitCase, run_cases, write_junit

    # A target that ran no case is never a pass: a skipped testcase, with the reason.
    others = [JunitCase(f"kfuzz.run.{t}", t, outcome="skipped", message=why)
              for t, why in report.skipped]
    others += [JunitCase(f"kfuzz.run.{t}", t, outcome="error", kind="failed", message=why,
                         text=why) for t, why in report.failed]
    if report.status == "interrupted":
        others.append(JunitCase("kfuzz.run", "interrupted", outcome="error",
                                kind="interrupted",
                                message="interrupted: the run was stopped before it ended; "
                                        "findings so far are kept"))
    write_junit(path, "kfuzz.run", run_cases(report.campaigns) + others)

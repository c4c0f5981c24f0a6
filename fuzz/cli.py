"""The `kfuzz` command: a thin face over the library.

Exit codes: 0 nothing over threshold; 1 findings, or replays that still fail; 2 a usage or
configuration error, reported as one line with no traceback; 130 interrupted with nothing found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from kfuzz import __version__
from kfuzz import targets as registry
from kfuzz.compare import Comparator, ComparatorError
from kfuzz.corpus import DEFAULT_DB, CorpusStore, json_safe
from kfuzz.errors import KfuzzError, OptionError
from kfuzz.runner import DEFAULT_CASE_TIMEOUT, RunOptions, check_device, make_executor
from kfuzz.search import PROFILES
from kfuzz.summary import Progress, run_document, run_text, targets_text
from kfuzz.summary import ratio as _ratio
from kfuzz.summary import short as _short
from kfuzz.summary import table as _table

EPILOG_EXIT = "exit status: 0 nothing over threshold, 1 findings or still-failing replays, 2 usage error"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _fail(message: str) -> int:
    print(f"kfuzz: error: {message}", file=sys.stderr)
    return 2


# -- helpers -----------------------------------------------------------------------------------

def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def _comparator_overrides(args: argparse.Namespace) -> dict[str, Any] | None:
    overrides: dict[str, Any] = {}
    if args.compare:
        overrides["mode"] = args.compare
    if args.atol is not None or args.rtol is not None:
        if args.atol is None or args.rtol is None:
            raise ComparatorError(
                f"{'--rtol' if args.atol is None else '--atol'} given without "
                f"{'--atol' if args.atol is None else '--rtol'}; pass both --atol and --rtol"
            )
        overrides.update(atol=args.atol, rtol=args.rtol)
        overrides.setdefault("mode", "allclose")
    if args.ulp is not None:
        overrides["ulp"] = args.ulp
        overrides.setdefault("mode", "ulp")
    if args.max_ratio is not None:
        overrides["max_ratio"] = args.max_ratio
    if overrides:
        # Validate the combination now, against a neutral base, for a one-line error.
        Comparator.from_dict({**Comparator(mode=overrides.get("mode", "allclose")).to_dict(),
                              **overrides})
    return overrides or None


def _executor(args: argparse.Namespace, *, isolate: bool) -> Any:
    return make_executor(isolate=isolate, case_timeout=args.case_timeout,
                         plugins=args.plugin or [])


def _check_device(device: str) -> None:
    check_device(device)


def _load_plugins(args: argparse.Namespace) -> None:
    for plugin in getattr(args, "plugin", None) or []:
        registry.load_plugin(plugin)


# -- commands ----------------------------------------------------------------------------------

def cmd_targets(args: argparse.Namespace) -> int:
    """List targets with kernels, oracles, signature and default comparator."""
    _load_plugins(args)
    described = [t.describe() for t in registry.all_targets().values()]
    if args.json:
        print(json.dumps({"targets": described}, indent=2))
    else:
        print(targets_text(described))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Fuzz targets, store findings, print a summary."""
    from kfuzz.pins import parse_pins
    from kfuzz.runner import run

    options = RunOptions(
        targets=args.target, all=args.all, kernel=args.kernel, oracle=args.oracle,
        comparator=_comparator_overrides(args), profile=args.profile,
        max_examples=args.max_examples, budget=args.budget, seed=args.seed, device=args.device,
        batch=args.batch, max_numel=args.max_numel, shrink_seconds=args.shrink_seconds,
        pins=parse_pins(args.pin or []), workers=args.workers, ray=args.ray,
        ray_address=args.ray_address, isolate=args.isolate, case_timeout=args.case_timeout,
        plugins=args.plugin or [],
    )
    progress = Progress(not args.json)
    try:
        report = run(options, db=args.db, argv=sys.argv[1:], progress=progress,
                     on_done=progress.done)
    finally:
        progress.done()
    print(json.dumps(run_document(report), indent=2) if args.json else run_text(report))
    if args.junit:
        from kfuzz.junit import JunitCase, run_cases, write_junit

        skipped = [JunitCase(f"kfuzz.run.{t}", t, outcome="skipped", message=why)
                   for t, why in report.skipped]
        write_junit(args.junit, "kfuzz.run", run_cases(report.campaigns) + skipped)
    return report.exit_code()


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay stored findings; exit 1 if any still fails."""
    from kfuzz.replay import STATUS_WORDS, replay

    _load_plugins(args)
    _check_device(args.device)
    if not Path(args.db).exists():
        raise KfuzzError(f"no corpus at {args.db!r}; run `kfuzz run` first or pass --db")
    store = CorpusStore(args.db)
    executor = _executor(args, isolate=args.isolate)
    try:
        results = replay(store, target=args.target, finding_id=args.id, kernel=args.kernel,
                         oracle=args.oracle, device=args.device, executor=executor,
                         case_timeout=args.case_timeout)
    finally:
        executor.close()
    if args.json:
        print(json.dumps({"db": str(args.db), "replays": [r.to_dict() for r in results]},
                         indent=2))
    else:
        rows = [[_short(r.fingerprint), STATUS_WORDS[r.status], r.target, r.kernel, r.oracle,
                 _ratio(r.stored_ratio), _ratio(r.mismatch_ratio), (r.error or "")[:80]]
                for r in results]
        print(_table(rows, ["id", "verdict", "target", "kernel", "oracle", "stored", "now",
                            "error"]))
        counts = {w: sum(r.status == s for r in results) for s, w in STATUS_WORDS.items()}
        print("\n" + ", ".join(f"{n} {w}" for w, n in counts.items()))
    if args.junit:
        from kfuzz.junit import replay_cases, replay_details, write_junit

        failing = [r.fingerprint for r in results if r.status == "fail"]
        write_junit(args.junit, "kfuzz.replay",
                    replay_cases(results, replay_details(store, failing)))
    return 1 if any(r.status == "fail" for r in results) else 0


def _open_existing(path: str) -> CorpusStore:
    if not Path(path).exists():
        raise KfuzzError(f"no corpus at {path!r}; pass --db PATH")
    return CorpusStore(path)


def cmd_corpus_list(args: argparse.Namespace) -> int:
    """List stored findings."""
    store = CorpusStore(args.db, read_only=True)
    rows = store.findings(target=args.target, status=args.status, limit=args.limit)
    if args.json:
        out = sys.stdout
        out.write('{"findings": [')
        for i, row in enumerate(rows):
            out.write(("," if i else "") + "\n  " + json.dumps(
                {k: json_safe(row[k]) for k in ("fingerprint", "status", "kind", "failure", "target",
                                     "kernel", "oracle", "mismatch_ratio", "size",
                                     "times_seen", "first_seen", "last_seen")}))
        out.write("\n]}\n")
        return 0
    headers = ["id", "status", "kind", "failure", "target", "kernel", "oracle", "ratio", "size",
               "seen", "last_seen"]
    table = [[_short(r["fingerprint"]), r["status"], r["kind"], r["failure"], r["target"],
              r["kernel"], r["oracle"], _ratio(r["mismatch_ratio"]), str(r["size"]),
              str(r["times_seen"]), r["last_seen"]] for r in rows]
    print(_table(table, headers) if table else "no findings")
    return 0


def cmd_corpus_show(args: argparse.Namespace) -> int:
    """Show one finding in full."""
    store = CorpusStore(args.db, read_only=True)
    row = store.get(store.resolve_id(args.id))
    row["replays"] = [
        {k: r.get(k) for k in ("at", "status", "kernel", "oracle", "mismatch_ratio", "error")}
        for r in store.replays(row["fingerprint"], newest_first=True, limit=20)]
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    for key in ("fingerprint", "target", "kernel", "oracle", "kind", "failure", "status",
                "first_seen", "last_seen", "times_seen", "last_replay", "last_replay_status",
                "size", "device", "error"):
        if row.get(key) is not None:
            print(f"{key:19} {row[key]}")
    print(f"{'mismatch_ratio':19} {_ratio(row.get('mismatch_ratio'))}")
    print(f"{'case':19} {json.dumps(row['case'])}")
    if row.get("comparator"):
        print(f"{'comparator':19} {json.dumps(row['comparator'])}")
    if row.get("shrink"):
        print(f"{'shrink':19} {json.dumps(row['shrink'])}")
    print(f"{'versions':19} {json.dumps(row.get('versions'))}")
    for name, metrics in (row.get("metrics") or {}).items():
        print(f"\noutput {name}: {Comparator.from_dict(metrics['comparator']).describe()}")
        print(metrics.get("message", ""))
        for point in metrics.get("worst_points", []):
            print(f"  at {point['index']}: actual {point['actual']} expected "
                  f"{point['expected']} diff {point['diff']} allowed {point['allowed']}")
    for replay in row["replays"]:
        print(f"replayed {replay['at']}: {replay['status']} with {replay['kernel']} "
              f"({_ratio(replay['mismatch_ratio'])})")
    return 0


def cmd_corpus_export(args: argparse.Namespace) -> int:
    """Write a standalone reproducer script for one finding."""
    from kfuzz.export import reproducer

    store = CorpusStore(args.db, read_only=True)
    row = store.get(store.resolve_id(args.id))
    script = reproducer(row)
    if args.out:
        Path(args.out).write_text(script)
        os.chmod(args.out, 0o755)
        print(f"wrote {args.out}; run it with: python {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(script)
    return 0


def cmd_corpus_merge(args: argparse.Namespace) -> int:
    """Merge corpora into --into, idempotently."""
    from kfuzz.merge import check_sources, merge_corpora

    check_sources(args.sources)  # before --into is created, so a bad source leaves no file
    store = CorpusStore(args.into)
    stats = merge_corpora(store, args.sources)
    total = store.count()
    if args.json:
        print(json.dumps({"into": str(args.into), "findings": total,
                          "sources": [s.to_dict() for s in stats]}, indent=2))
        return 0
    rows = [[s.source, str(s.findings_added), str(s.findings_updated), str(s.replays_added),
             str(s.runs_added)] for s in stats]
    print(_table(rows, ["source", "new findings", "updated", "replays added", "runs added"]))
    print(f"\n{args.into}: {total} findings")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML page and Markdown summary of a corpus."""
    from kfuzz.report import write_report

    _load_plugins(args)
    _check_device(args.device)
    if args.max_plots < 0:
        raise KfuzzError(f"--max-plots {args.max_plots} must be 0 or more")
    store = _open_existing(args.db)
    files = write_report(store, args.out, device=args.device, max_plots=args.max_plots)
    print(f"wrote {files.html} and {files.markdown} ({len(files.plots)} plots, "
          f"{files.findings} findings on {files.targets} targets)")
    return 0


# -- parser ------------------------------------------------------------------------------------

def _isolation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--isolate", action="store_true",
                   help="run kernels in a worker process: a crash or hang becomes a finding "
                   "and the run goes on (on by default in the nightly profile)")
    p.add_argument("--case-timeout", type=_positive_float, metavar="SECONDS",
                   help=f"a case running longer is a timeout finding; implies --isolate "
                   f"(default {DEFAULT_CASE_TIMEOUT:g} when isolated)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = _Parser(
        prog="kfuzz",
        description="Property-based differential fuzzer for numerical compute kernels: "
        "Hypothesis draws cases, kernels run beside golden oracles, failing cases are shrunk "
        "and stored in a SQLite corpus.",
        epilog=EPILOG_EXIT,
    )
    parser.add_argument("--version", action="version", version=f"kfuzz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def plugin_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--plugin", action="append", metavar="FILE_OR_MODULE",
                       help="import a Python file or module that registers targets (repeatable)")

    p = sub.add_parser("targets", help="list targets, kernels, oracles and comparators",
                       description="List every target with its kernels, oracles, input "
                       "signature and default comparator per output.")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    plugin_arg(p)
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser(
        "run", help="fuzz targets and store findings",
        description="Fuzz targets: draw cases, run kernel and oracle, compare, shrink each "
        "distinct failure to a minimal case and store it (with the worst case seen) in the "
        "corpus.", epilog=EPILOG_EXIT)
    p.add_argument("target", nargs="*", metavar="TARGET", help="target names (see kfuzz targets)")
    p.add_argument("--all", action="store_true",
                   help="fuzz every target (but the faults.* benchmark targets)")
    p.add_argument("--kernel", metavar="K",
                   help="kernel variant name, or module:function with the target's signature")
    p.add_argument("--oracle", metavar="O",
                   help="oracle name, a kernel variant name (kernel vs kernel), or module:function")
    p.add_argument("--compare", choices=["exact", "allclose", "ulp"],
                   help="comparison mode for every output (default: each output's own)")
    p.add_argument("--atol", type=float, metavar="A", help="absolute tolerance (with --rtol)")
    p.add_argument("--rtol", type=float, metavar="R", help="relative tolerance (with --atol)")
    p.add_argument("--ulp", type=float, metavar="N", help="ULP distance allowed (ulp mode)")
    p.add_argument("--max-ratio", type=float, metavar="F",
                   help="fraction of bad elements allowed before a case fails, e.g. 0.005")
    p.add_argument("--max-examples", type=int, metavar="N",
                   help="cases to run per target, shrinking not counted (default: the profile's)")
    p.add_argument("--budget", type=_positive_float, metavar="SECONDS",
                   help="wall-clock budget for the search, split across targets")
    p.add_argument("--seed", type=int, metavar="S", help="seed for a reproducible run")
    p.add_argument("--profile", choices=list(PROFILES), default="dev",
                   help="ci: 100 examples, fixed seed; dev: 200 examples; "
                   "nightly: 100000 cases, 8 per example, isolated (default dev)")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda",
                   help="where kernels run; inputs are made on the CPU from the seed (default cpu)")
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
    p.add_argument("--shrink-seconds", type=_positive_float, metavar="SECONDS",
                   help="time allowed to shrink each finding (default: the profile's, 20-120)")
    _isolation_args(p)
    p.add_argument("--pin", action="append", metavar="FIELD=VALUE",
                   help="hold a case field at a JSON value while searching and shrinking, "
                   "e.g. --pin shape=[4,64,512] --pin dtype=bfloat16 (repeatable)")
    p.add_argument("--max-numel", type=int, metavar="N",
                   help="most elements in one input tensor of a case (default: the target's)")
    p.add_argument("--db", default=DEFAULT_DB, metavar="PATH",
                   help=f"corpus database (default {DEFAULT_DB})")
    p.add_argument("--json", action="store_true", help="print one JSON document, no progress")
    p.add_argument("--junit", metavar="FILE",
                   help="also write JUnit XML: one testcase per finding (for CI systems)")
    plugin_arg(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "replay", help="rerun stored findings",
        description="Rerun stored findings from their stored cases; mark each still failing "
        "(open), fixed, or error.", epilog=EPILOG_EXIT)
    p.add_argument("--db", default=DEFAULT_DB, metavar="PATH",
                   help=f"corpus database (default {DEFAULT_DB})")
    p.add_argument("--target", metavar="T", help="only this target's findings")
    p.add_argument("--id", metavar="ID", help="only this finding (a fingerprint prefix)")
    p.add_argument("--kernel", metavar="K", help="replay with this kernel instead of the stored one")
    _isolation_args(p)
    p.add_argument("--oracle", metavar="O", help="replay with this oracle instead of the stored one")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda", help="where kernels run")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--junit", metavar="FILE",
                   help="also write JUnit XML: one testcase per replayed finding (for CI systems)")
    plugin_arg(p)
    p.set_defaults(func=cmd_replay)

    corpus = sub.add_parser("corpus", help="inspect the corpus",
                            description="Inspect stored findings.")
    csub = corpus.add_subparsers(dest="corpus_command", metavar="SUBCOMMAND",
                                 parser_class=_Parser)
    corpus.set_defaults(func=lambda args: corpus.error("choose list, show, export or merge"))

    def db_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=DEFAULT_DB, metavar="PATH",
                       help=f"corpus database (default {DEFAULT_DB})")

    p = csub.add_parser("list", help="list findings", description="List stored findings, "
                        "newest first.")
    db_arg(p)
    p.add_argument("--target", metavar="T", help="only this target")
    p.add_argument("--status", choices=["open", "fixed"], help="only this status")
    p.add_argument("--limit", type=int, metavar="N", help="at most N rows")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_corpus_list)

    p = csub.add_parser("show", help="show one finding", description="Show one finding: "
                        "case, comparator, metrics, worst points, replays.")
    p.add_argument("id", metavar="ID", help="fingerprint or a unique prefix")
    db_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_corpus_show)

    p = csub.add_parser("export", help="write a standalone reproducer script",
                        description="Write a Python script that reproduces one finding with "
                        "nothing but torch and kfuzz installed.")
    p.add_argument("id", metavar="ID", help="fingerprint or a unique prefix")
    db_arg(p)
    p.add_argument("-o", "--out", metavar="FILE", help="write here instead of stdout")
    p.set_defaults(func=cmd_corpus_export)

    p = csub.add_parser(
        "merge", help="merge corpora from several machines",
        description="Merge corpora into one, idempotently: findings by fingerprint (earliest "
        "first_seen, latest last_seen, status of the latest event, each corpus's sightings "
        "counted once), replays and runs without duplicates. Sources are only read.")
    p.add_argument("sources", nargs="+", metavar="DB", help="corpus databases to merge in")
    p.add_argument("--into", default=DEFAULT_DB, metavar="PATH",
                   help=f"corpus to merge into, created if absent (default {DEFAULT_DB})")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_corpus_merge)

    p = sub.add_parser(
        "report", help="write an HTML report with plots and a Markdown summary",
        description="Write DIR/index.html and DIR/summary.md: per target the findings, "
        "mismatch ratios, worst points, error histograms (absolute, relative, ULP; each "
        "plotted finding's case is run again for them, without recording a replay) and the "
        "mismatch ratio across runs and replays, as PNG plots in DIR/plots.")
    p.add_argument("--db", default=DEFAULT_DB, metavar="PATH",
                   help=f"corpus database (default {DEFAULT_DB})")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write the report in")
    p.add_argument("--max-plots", type=int, default=8, metavar="N",
                   help="error histograms for at most N findings per target, open and worst "
                   "first (default 8)")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda",
                   help="where kernels run for the histograms (default cpu)")
    plugin_arg(p)
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # --kernel mymodule:fn and --plugin mymodule resolve from the current directory, as
    # `python -m` would.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if argv is None and args.command in ("run", "replay") and not args.isolate:
        from kfuzz import crashhint

        crashhint.install()  # a kernel that kills this process gets a word and a hint
    try:
        return int(args.func(args))
    except OptionError as exc:
        return _fail(exc.flag_message())
    except (KfuzzError, ComparatorError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `kfuzz` command line's grammar: commands, flags and their help.

`build_parser()` describes every command; each subcommand's parser sets `func` to the command's
name ("run", "corpus_list", ...), which `kfuzz.cli` maps to the function that runs it.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from kfuzz import __version__
from kfuzz.enums import Failure, FindingStatus, Kind
from kfuzz.settings import DEFAULT_CASE_TIMEOUT, PROFILES
from kfuzz.store.corpus import DEFAULT_DB

EPILOG_EXIT = ("exit status: 0 nothing over threshold, 1 findings or still-failing replays, 2 usage "
               "or configuration error (for `run`, also a target that could not be fuzzed), 3 a "
               "finding could not be replayed, 130 interrupted (Ctrl-C or SIGTERM; findings so "
               "far are kept and the summary says 'interrupted')")
REPLAY_EXIT = ("exit status: 0 every replayed finding passes, 1 one still fails, 2 usage error "
               "(also a --target or --id that matches no finding), 3 a finding could not be "
               "replayed (unless --accept-errors)")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


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
                       description="List every target (or the ones named) with its kernels, "
                       "oracles, input signature and default comparator per output.")
    p.add_argument("target", nargs="*", metavar="TARGET",
                   help="only these targets (an unknown name is an error, with suggestions)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--names", action="store_true",
                   help="only the targets' names, one a line (with --json: {\"targets\": "
                   "[names]}); fast: imports no kernel")
    plugin_arg(p)
    p.set_defaults(func="targets")

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
    p.add_argument("--exclude", action="append", metavar="REGIME",
                   help="leave a value regime out of the search, e.g. --exclude overflow for a "
                   "kernel that does not promise to handle it (repeatable)")
    p.add_argument("--max-numel", type=int, metavar="N",
                   help="most elements in one input tensor of a case (default: the target's)")
    p.add_argument("--db", default=DEFAULT_DB, metavar="PATH",
                   help=f"corpus database (default {DEFAULT_DB})")
    p.add_argument("--json", action="store_true", help="print one JSON document, no progress")
    p.add_argument("--junit", metavar="FILE",
                   help="also write JUnit XML: one testcase per finding (for CI systems)")
    plugin_arg(p)
    p.set_defaults(func="run")

    def stand_in_plugin_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--plugin", action="append", metavar="FILE_OR_MODULE",
                       help="import a Python file or module that registers targets "
                       "(repeatable); it stands in for a plugin a finding recorded under the "
                       "same file or module name (a corpus made under another checkout path)")

    p = sub.add_parser(
        "replay", help="rerun stored findings",
        description="Rerun stored findings from their stored cases, loading the plugins each "
        "recorded; mark each still failing (open), fixed, or error. With --kernel or --oracle "
        "the replays are recorded as made with another kernel and leave the findings' status "
        "alone.", epilog=REPLAY_EXIT)
    p.add_argument("--db", default=DEFAULT_DB, metavar="PATH",
                   help=f"corpus database (default {DEFAULT_DB})")
    p.add_argument("--target", metavar="T", help="only this target's findings")
    p.add_argument("--id", metavar="ID", help="only this finding (a fingerprint prefix)")
    p.add_argument("--kernel", metavar="K", help="replay with this kernel instead of the stored one")
    _isolation_args(p)
    p.add_argument("--oracle", metavar="O", help="replay with this oracle instead of the stored one")
    p.add_argument("--device", default="cpu", metavar="cpu|cuda", help="where kernels run")
    p.add_argument("--accept-errors", action="store_true",
                   help="findings that cannot be replayed here do not set the exit status "
                   "(default: exit 3)")
    p.add_argument("--no-record", action="store_true",
                   help="print the verdicts but record nothing in the corpus, which is only "
                   "read (a committed or read-only corpus)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--junit", metavar="FILE",
                   help="also write JUnit XML: one testcase per replayed finding (for CI systems)")
    stand_in_plugin_arg(p)
    p.set_defaults(func="replay")

    corpus = sub.add_parser("corpus", help="inspect the corpus",
                            description="Inspect, export, remove and merge stored findings.")
    csub = corpus.add_subparsers(dest="corpus_command", metavar="SUBCOMMAND",
                                 parser_class=_Parser)
    corpus.set_defaults(func=lambda args: corpus.error("choose list, show, export, rm or merge"))

    def db_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=DEFAULT_DB, metavar="PATH",
                       help=f"corpus database (default {DEFAULT_DB})")

    def filter_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--target", metavar="T", help="only this target's findings")
        p.add_argument("--kernel", metavar="K", help="only findings of this kernel")
        p.add_argument("--status", choices=[s.value for s in FindingStatus],
                       help="only findings of this status")

    p = csub.add_parser("list", help="list findings", description="List stored findings, "
                        "newest first.")
    db_arg(p)
    filter_args(p)
    p.add_argument("--failure", choices=[f.value for f in Failure], help="only this failure")
    p.add_argument("--kind", choices=[k.value for k in Kind], help="only this kind")
    p.add_argument("--limit", type=int, metavar="N", help="at most N rows")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func="corpus_list")

    p = csub.add_parser("show", help="show one finding", description="Show one finding: "
                        "case, comparator, metrics, worst points, replays.")
    p.add_argument("id", metavar="ID", help="fingerprint or a unique prefix")
    db_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func="corpus_show")

    p = csub.add_parser("export", help="write a standalone reproducer script",
                        description="Write a Python script that reproduces one finding with "
                        "nothing but torch and kfuzz installed, from any directory; with "
                        "--inputs, the case's input values as a .npz for a reproducer that "
                        "needs neither.")
    p.add_argument("id", metavar="ID", help="fingerprint or a unique prefix")
    db_arg(p)
    p.add_argument("-o", "--out", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--inputs", metavar="FILE.npz",
                   help="write the case's input values as a NumPy .npz (then the script only "
                   "with -o), as kfuzz's executor materialises them, for a reproducer "
                   "without kfuzz: one array per input, named as the kernel's argument; a "
                   "dtype NumPy lacks as its raw bits (bfloat16 as uint16, float8 as uint8); "
                   "key __kfuzz__ holds JSON: each input's dtype, stored_as and shape, the "
                   "params (keyword arguments), signature, target, kernel, oracle and case. "
                   "Load with numpy.load(FILE); json.loads(npz['__kfuzz__'].item())")
    p.add_argument("--force", action="store_true", help="overwrite FILE(s) that exist")
    p.add_argument("--plugin", action="append", metavar="FILE",
                   help="the script loads this plugin instead of a recorded one of the same "
                   "file or module name (a corpus made under another checkout path; the "
                   "script takes --plugin too); repeatable, not imported here")
    p.set_defaults(func="corpus_export")

    p = csub.add_parser("rm", help="remove findings",
                        description="Remove findings, with their replays, by id or by "
                        "--target/--kernel/--status.")
    p.add_argument("ids", nargs="*", metavar="ID", help="fingerprints or unique prefixes")
    db_arg(p)
    filter_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func="corpus_rm")

    p = csub.add_parser(
        "merge", help="merge corpora from several machines",
        description="Merge corpora into one, idempotently: findings by fingerprint (earliest "
        "first_seen, latest last_seen, status of the latest event, each corpus's sightings "
        "counted once), replays and runs without duplicates. Sources are only read.")
    p.add_argument("sources", nargs="+", metavar="DB", help="corpus databases to merge in")
    p.add_argument("--into", default=DEFAULT_DB, metavar="PATH",
                   help=f"corpus to merge into, created if absent (default {DEFAULT_DB})")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func="corpus_merge")

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
    stand_in_plugin_arg(p)
    p.set_defaults(func="report")
    return parser

"""The `kfuzz` command line's shared grammar: the parser class, the exit-status epilog, and the
flags several commands take, each added by one helper (`--json`, `--db`, `--device`,
`--plugin`, `--kernel`/`--oracle`, `--junit`, the isolation flags, the comparator flags) and,
where a flag needs it, read back by the helper beside it.

Each command's module (`kfuzz.cli.run`, `replay`, `report`, `targets`, `corpus`) defines its
subparser with these and binds its command function with `set_defaults(func=...)`;
`kfuzz.cli.app.build_parser` puts them together. Imports nothing of the engine.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, NoReturn

from kfuzz.judge.comparator import ComparatorError
from kfuzz.settings import DEFAULT_CASE_TIMEOUT
from kfuzz.store.corpus import DEFAULT_DB

if TYPE_CHECKING:
    # What `add_subparsers()` returns: each command module adds its parser to it.
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

EPILOG_EXIT = ("exit status: 0 nothing over threshold, 1 findings or still-failing replays, 2 usage "
               "or configuration error (for `run`, also a target that could not be fuzzed), 3 a "
               "finding could not be replayed, 130 interrupted (Ctrl-C or SIGTERM; findings so "
               "far are kept and the summary says 'interrupted')")
JSON_HELP = "print one JSON document"
PLUGIN_HELP = "import a Python file or module that registers targets (repeatable)"
# For the commands that run stored findings: a --plugin replaces a recorded one of its name.
STAND_IN_PLUGIN_HELP = ("import a Python file or module that registers targets (repeatable); it "
                        "stands in for a plugin a finding recorded under the same file or module "
                        "name (a corpus made under another checkout path)")


class KfuzzParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not a usage block."""

    def error(self, message: str) -> NoReturn:
        """Print `message` as one line naming the help to read, and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_float(text: str) -> float:
    """An argparse type: a number > 0.

    Raises:
        argparse.ArgumentTypeError: for text that is not a number, or a number <= 0.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def json_option(p: argparse.ArgumentParser, help: str = JSON_HELP) -> None:
    """Add `--json` (args.json): print one JSON document instead of text."""
    p.add_argument("--json", action="store_true", help=help)


def db_option(p: argparse.ArgumentParser) -> None:
    """Add `--db PATH` (args.db), the corpus database, DEFAULT_DB by default."""
    p.add_argument("--db", default=DEFAULT_DB, metavar="PATH",
                   help=f"corpus database (default {DEFAULT_DB})")


def device_option(p: argparse.ArgumentParser, help: str) -> None:
    """Add `--device` (args.device, "cpu" by default): where kernels run."""
    p.add_argument("--device", default="cpu", metavar="cpu|cuda", help=help)


def plugin_option(p: argparse.ArgumentParser, help: str = PLUGIN_HELP,
                  metavar: str = "FILE_OR_MODULE") -> None:
    """Add the repeatable `--plugin` (args.plugin: a list, or None when not given)."""
    p.add_argument("--plugin", action="append", metavar=metavar, help=help)


def variant_options(p: argparse.ArgumentParser, kernel_help: str, oracle_help: str) -> None:
    """Add `--kernel K` and `--oracle O` (args.kernel, args.oracle; None when not given)."""
    p.add_argument("--kernel", metavar="K", help=kernel_help)
    p.add_argument("--oracle", metavar="O", help=oracle_help)


def junit_option(p: argparse.ArgumentParser, testcase: str) -> None:
    """Add `--junit FILE` (args.junit); `testcase` says what each testcase is."""
    p.add_argument("--junit", metavar="FILE",
                   help=f"also write JUnit XML: one testcase per {testcase} (for CI systems)")


def isolation_options(p: argparse.ArgumentParser) -> None:
    """Add `--isolate` and `--case-timeout SECONDS` (args.isolate, args.case_timeout)."""
    p.add_argument("--isolate", action="store_true",
                   help="run kernels in a worker process: a crash or hang becomes a finding "
                   "and the run goes on (on by default in the nightly profile)")
    p.add_argument("--case-timeout", type=positive_float, metavar="SECONDS",
                   help=f"a case running longer is a timeout finding; implies --isolate "
                   f"(default {DEFAULT_CASE_TIMEOUT:g} when isolated)")


def comparator_options(p: argparse.ArgumentParser) -> None:
    """Add `--compare`, `--atol`, `--rtol`, `--ulp` and `--max-ratio`; `comparator_overrides`
    reads them."""
    p.add_argument("--compare", choices=["exact", "allclose", "ulp"],
                   help="comparison mode for every output (default: each output's own)")
    p.add_argument("--atol", type=float, metavar="A", help="absolute tolerance (with --rtol)")
    p.add_argument("--rtol", type=float, metavar="R", help="relative tolerance (with --atol)")
    p.add_argument("--ulp", type=float, metavar="N", help="ULP distance allowed (ulp mode)")
    p.add_argument("--max-ratio", type=float, metavar="F",
                   help="fraction of bad elements allowed before a case fails, e.g. 0.005")


def comparator_overrides(args: argparse.Namespace) -> dict[str, Any] | None:
    """The comparator fields the `comparator_options` flags give, checked now.

    Args:
        args: parsed arguments of a command with `comparator_options`.

    Returns:
        The fields to override on each output's default comparator, or None for none.

    Raises:
        ComparatorError: for --atol without --rtol (or the reverse), or settings that no
            comparator takes (a one-line error before anything runs).
    """
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
    from kfuzz.run.plan import comparator_overrides as checked

    return checked(overrides or None)  # validated now, for a one-line error


def check_device(device: str) -> None:
    """Check a `--device` value before anything runs.

    Raises:
        OptionError: for a device kfuzz does not run kernels on, or a CUDA device this machine
            lacks.
    """
    from kfuzz.run.plan import check_device as check

    check(device)

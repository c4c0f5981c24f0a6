"""The `kfuzz` command: a thin face over the library.

`main` parses the command line with `build_parser` (each command group's module adds its
subparser and binds its command function) and turns errors into exit statuses.

Exit codes: 0 nothing over threshold; 1 findings, or replays that still fail; 2 a usage or
configuration error, reported as one line with no traceback (or a target of a run that could
not be fuzzed); 3 a finding that could not be replayed; 130 interrupted (Ctrl-C or SIGTERM;
what was found so far is kept).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence

from kfuzz import __version__

# Only what every command needs is imported here: the corpus commands, --help and
# `targets --names` run without torch, Triton or Hypothesis (tests/test_startup.py); the
# commands that run kernels import the engine inside.
from kfuzz.cli import corpus, replay, report, run, targets
from kfuzz.cli.parser import EPILOG_EXIT, KfuzzParser
from kfuzz.errors import KfuzzError, OptionError
from kfuzz.judge.comparator import ComparatorError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command; each subcommand's parser sets `func`, the
    function that runs it (it takes the parsed arguments and returns the exit status)."""
    parser = KfuzzParser(
        prog="kfuzz",
        description="Property-based differential fuzzer for numerical compute kernels: "
        "Hypothesis draws cases, kernels run beside golden oracles, failing cases are shrunk "
        "and stored in a SQLite corpus.",
        epilog=EPILOG_EXIT,
    )
    parser.add_argument("--version", action="version", version=f"kfuzz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=KfuzzParser)
    for group in (targets, run, replay, corpus, report):  # the order --help lists them in
        group.add_parser(sub)
    return parser


def _fail(message: str) -> int:
    print(f"kfuzz: error: {message}", file=sys.stderr)
    return 2


def _sigterm_as_interrupt() -> None:
    """SIGTERM (a CI job's timeout, `kill`) stops a run as Ctrl-C does: findings so far are
    kept, the summary says "interrupted", the exit status is 130."""
    try:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on `argv` (None: the process's arguments, with the process-wide setup a
    console command gets: the crash hint, SIGTERM as an interrupt). Returns the exit status;
    argparse exits itself for --help, --version and usage errors (status 2)."""
    started = time.time()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.started = started
    args.argv = list(sys.argv[1:] if argv is None else argv)
    # --kernel mymodule:fn and --plugin mymodule resolve from the current directory, as
    # `python -m` would.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if argv is None and args.command in ("run", "replay") and not args.isolate:
        from kfuzz.execute import crashhint

        crashhint.install()  # a kernel that kills this process gets a word and a hint
    if argv is None and args.command == "run":
        _sigterm_as_interrupt()
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

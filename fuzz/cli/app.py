"""The `kfuzz` command: a thin face over the library.

Exit codes: 0 nothing over threshold; 1 findings, or replays that still fail; 2 a usage or
configuration error, reported as one line with no traceback (or a target of a run that could
not be fuzzed); 3 a finding that could not be replayed; 130 interrupted (Ctrl-C or SIGTERM;
what was found so far is kept).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kfuzz.cli.corpus import (
    cmd_corpus_export,
    cmd_corpus_list,
    cmd_corpus_merge,
    cmd_corpus_rm,
    cmd_corpus_show,
)
from kfuzz.cli.parser import build_parser
from kfuzz.errors import KfuzzError, OptionError
from kfuzz.judge.comparator import ComparatorError
from kfuzz.present.summary import Progress, run_document, run_text, targets_text
from kfuzz.present.summary import ratio as _ratio
from kfuzz.present.summary import short as _short
from kfuzz.present.summary import table as _table
from kfuzz.store.corpus import CorpusStore

# Only what every command needs is imported here: the corpus commands, --help and
# `targets --names` run without torch, Triton or Hypothesis (tests/test_startup.py); the
# commands that run kernels import the engine inside.
from kfuzz.targets import registry


def _fail(message: str) -> int:
    print(f"kfuzz: error: {message}", file=sys.stderr)
    return 2


# -- helpers -----------------------------------------------------------------------------------

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
    from kfuzz.run.runner import comparator_overrides

    return comparator_overrides(overrides or None)  # validated now, for a one-line error


def _executor(args: argparse.Namespace, *, isolate: bool) -> Any:
    from kfuzz.run.runner import make_executor

    return make_executor(isolate=isolate, case_timeout=args.case_timeout,
                         plugins=args.plugin or [])


def _check_device(device: str) -> None:
    from kfuzz.run.runner import check_device

    check_device(device)


def _load_plugins(args: argparse.Namespace) -> None:
    for plugin in getattr(args, "plugin", None) or []:
        registry.load_plugin(plugin)


# -- commands ----------------------------------------------------------------------------------

def cmd_targets(args: argparse.Namespace) -> int:
    """List targets with kernels, oracles, signature and default comparator; with --names, only
    their names, importing no kernel."""
    _load_plugins(args)
    if args.names:
        names = registry.names()
        if args.target:
            missing = sorted(set(args.target) - set(names))
            if missing:
                registry.get(missing[0])  # raises UnknownTarget with suggestions
            names = [n for n in names if n in args.target]
        print(json.dumps({"targets": names}, indent=2) if args.json else "\n".join(names))
        return 0
    chosen = ([registry.get(name) for name in args.target] if args.target
              else list(registry.all_targets().values()))
    described = [t.describe() for t in chosen]
    if args.json:
        print(json.dumps({"targets": described}, indent=2))
    else:
        print(targets_text(described))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Fuzz targets, store findings, print a summary."""
    from kfuzz.cases.pins import parse_pins
    from kfuzz.run.runner import RunOptions, run
    from kfuzz.search.campaign import CampaignConfig

    campaign = CampaignConfig(
        target="", kernel=args.kernel, oracle=args.oracle, comparator=_comparator_overrides(args),
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
        write_junit(args.junit, "kfuzz.run", run_cases(report.campaigns) + others)
    return report.exit_code()


def _sigterm_as_interrupt() -> None:
    """SIGTERM (a CI job's timeout, `kill`) stops a run as Ctrl-C does: findings so far are
    kept, the summary says "interrupted", the exit status is 130."""
    try:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread
        pass


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay stored findings. Exit status: 0 every replayed finding passes, 1 one still
    fails, 3 one could not be replayed (unless --accept-errors), 2 a usage error (including
    a --target or --id that matches no finding)."""
    from kfuzz.store.replay import STATUS_WORDS, exit_code, replay

    registry.load_plugins(args.plugin or [])  # each stands in for a recorded plugin of its name
    _check_device(args.device)
    if not Path(args.db).exists():
        raise KfuzzError(f"no corpus at {args.db!r}; run `kfuzz run` first or pass --db")
    # --no-record reads the corpus only, so a read-only one replays too.
    store = CorpusStore(args.db, read_only=args.no_record,
                        fix="pass --no-record to replay without recording, or copy it "
                        "somewhere writable and pass --db COPY")
    executor = _executor(args, isolate=args.isolate)
    try:
        results = replay(store, target=args.target, finding_id=args.id, kernel=args.kernel,
                         oracle=args.oracle, device=args.device, executor=executor,
                         case_timeout=args.case_timeout, record=not args.no_record)
    finally:
        executor.close()
    if args.json:
        print(json.dumps({"db": str(args.db), "replays": [r.to_dict() for r in results]},
                         indent=2))
    else:
        rows = [[_short(r.fingerprint), STATUS_WORDS[r.status], r.target, r.kernel, r.oracle,
                 _ratio(r.stored_ratio), _ratio(r.mismatch_ratio), (r.error or "").split("\n")[0][:80]]
                for r in results]
        print(_table(rows, ["id", "verdict", "target", "kernel", "oracle", "stored", "now",
                            "error"]))
        counts = {w: sum(r.status == s for r in results) for s, w in STATUS_WORDS.items()}
        print("\n" + ", ".join(f"{n} {w}" for w, n in counts.items()))
        if args.no_record:
            print("nothing recorded (--no-record): the corpus is unchanged")
        elif any(r.substitute for r in results):
            print("replayed with another kernel or oracle than the findings' own: their "
                  "status is left as it was")
    for r in results:  # in full: the table cuts errors short
        if r.status == "error":
            print(f"kfuzz: finding {_short(r.fingerprint)} could not be replayed: {r.error}",
                  file=sys.stderr)
    if args.junit:
        from kfuzz.present.junit import outputs_text, replay_cases, write_junit

        details = {r.fingerprint: outputs_text(r.outputs, r.error) for r in results
                   if r.status == "fail"}
        write_junit(args.junit, "kfuzz.store.replay", replay_cases(results, details))
    code = exit_code(results, accept_errors=args.accept_errors)
    if code == 3:
        print("kfuzz: some findings could not be replayed (exit 3; --accept-errors to exit by "
              "the others)", file=sys.stderr)
    return code


def _open_existing(path: str) -> CorpusStore:
    """The corpus at `path`, read-only (a read-only corpus too). Raises KfuzzError."""
    if not Path(path).exists():
        raise KfuzzError(f"no corpus at {path!r}; pass --db PATH")
    return CorpusStore(path, read_only=True)


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML page and Markdown summary of a corpus."""
    from kfuzz.present.report import write_report

    registry.load_plugins(args.plugin or [])  # each stands in for a recorded plugin of its name
    _check_device(args.device)
    if args.max_plots < 0:
        raise KfuzzError(f"--max-plots {args.max_plots} must be 0 or more")
    store = _open_existing(args.db)
    files = write_report(store, args.out, device=args.device, max_plots=args.max_plots)
    print(f"wrote {files.html} and {files.markdown} ({len(files.plots)} plots, "
          f"{files.findings} findings on {files.targets} targets)")
    return 0


# The names `kfuzz.cli.parser` gives the commands.
COMMANDS = {"targets": cmd_targets, "run": cmd_run, "replay": cmd_replay, "report": cmd_report,
            "corpus_list": cmd_corpus_list, "corpus_show": cmd_corpus_show,
            "corpus_export": cmd_corpus_export, "corpus_merge": cmd_corpus_merge,
            "corpus_rm": cmd_corpus_rm}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
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
    command = COMMANDS[args.func] if isinstance(args.func, str) else args.func
    if argv is None and args.command in ("run", "replay") and not args.isolate:
        from kfuzz.execute import crashhint

        crashhint.install()  # a kernel that kills this process gets a word and a hint
    if argv is None and args.command == "run":
        _sigterm_as_interrupt()
    try:
        return int(command(args))
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

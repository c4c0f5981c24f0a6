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
from typing import Any

from kfuzz import targets as registry
from kfuzz.cli_parser import build_parser
from kfuzz.compare import Comparator, ComparatorError
from kfuzz.corpus import CorpusStore, json_safe
from kfuzz.errors import KfuzzError, OptionError
from kfuzz.runner import RunOptions, check_device, make_executor
from kfuzz.search import CampaignConfig
from kfuzz.summary import Progress, run_document, run_text, targets_text
from kfuzz.summary import ratio as _ratio
from kfuzz.summary import short as _short
from kfuzz.summary import table as _table


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
    """Replay stored findings. Exit status: 0 every replayed finding passes, 1 one still
    fails, 3 one could not be replayed (unless --accept-errors), 2 a usage error (including
    a --target or --id that matches no finding)."""
    from kfuzz.replay import STATUS_WORDS, exit_code, replay

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
        if any(r.substitute for r in results):
            print("replayed with another kernel or oracle than the findings' own: their "
                  "status is left as it was")
    if args.junit:
        from kfuzz.junit import replay_cases, replay_details, write_junit

        failing = [r.fingerprint for r in results if r.status == "fail"]
        write_junit(args.junit, "kfuzz.replay",
                    replay_cases(results, replay_details(store, failing)))
    code = exit_code(results, accept_errors=args.accept_errors)
    if code == 3:
        print("kfuzz: some findings could not be replayed (exit 3; --accept-errors to exit by "
              "the others)", file=sys.stderr)
    return code


def _open_existing(path: str) -> CorpusStore:
    if not Path(path).exists():
        raise KfuzzError(f"no corpus at {path!r}; pass --db PATH")
    return CorpusStore(path)


def _check_filter_values(store: CorpusStore, args: argparse.Namespace) -> None:
    """Raise CorpusError for a --target or --kernel that no stored finding has, naming the
    closest one that some finding has."""
    from kfuzz.errors import CorpusError, did_you_mean

    for column in ("target", "kernel"):
        value = getattr(args, column, None)
        if not value:
            continue
        known = store.distinct(column)
        if value not in known:
            raise CorpusError(
                f"no finding has {column} {value!r} in {str(store.path)!r}"
                + (f"; {column}s with findings: {', '.join(known)}" if known else " (it is empty)")
                + did_you_mean(value, known)
            )


def _selected(store: CorpusStore, args: argparse.Namespace) -> Any:
    """The findings rows that --target/--kernel/--status/--failure/--kind select."""
    _check_filter_values(store, args)
    return store.findings(target=args.target, kernel=args.kernel, status=args.status,
                          failure=getattr(args, "failure", None), kind=getattr(args, "kind", None),
                          limit=getattr(args, "limit", None))


def cmd_corpus_list(args: argparse.Namespace) -> int:
    """List stored findings."""
    store = CorpusStore(args.db, read_only=True)
    rows = _selected(store, args)
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


def cmd_corpus_rm(args: argparse.Namespace) -> int:
    """Delete findings (with their replays) by id, or all that --target/--kernel/--status
    select."""
    filters = [f"--{name}" for name in ("target", "kernel", "status") if getattr(args, name)]
    if args.ids and filters:
        raise KfuzzError(f"give finding ids or {'/'.join(filters)}, not both")
    if not args.ids and not filters:
        raise KfuzzError("name the findings to remove: their ids, or --target/--kernel/--status "
                         "(see `kfuzz corpus list`)")
    store = CorpusStore(args.db, create=False)
    if args.ids:
        keys = [store.resolve_id(i) for i in args.ids]  # every id checked before any is removed
    else:
        keys = [r["fingerprint"] for r in _selected(store, args)]
        if not keys:
            raise KfuzzError(f"no finding matches {' '.join(filters)} in {args.db!r}; nothing removed")
    removed = store.delete(keys)
    if args.json:
        print(json.dumps({"db": str(args.db), "removed": keys}, indent=2))
    else:
        print(f"removed {removed} finding{'s' if removed != 1 else ''} from {args.db}: "
              + " ".join(_short(k) for k in keys))
    return 0


def cmd_corpus_show(args: argparse.Namespace) -> int:
    """Show one finding in full."""
    store = CorpusStore(args.db, read_only=True)
    row = store.get(store.resolve_id(args.id))
    row["replays"] = [
        {k: r.get(k) for k in ("at", "status", "kernel", "oracle", "mismatch_ratio", "error",
                               "substitute")}
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
    if row.get("plugins"):
        print(f"{'plugins':19} {json.dumps(row['plugins'])}")
    for name, metrics in (row.get("metrics") or {}).items():
        try:
            described = Comparator.from_dict(metrics["comparator"]).describe()
        except (KeyError, TypeError, ComparatorError):
            described = "comparator not recorded"  # a hand-written or damaged record
        print(f"\noutput {name}: {described}")
        print(metrics.get("message", ""))
        for point in metrics.get("worst_points", []):
            print(f"  at {point['index']}: actual {point['actual']} expected "
                  f"{point['expected']} diff {point['diff']} allowed {point['allowed']}")
    for replay in row["replays"]:
        print(f"replayed {replay['at']}: {replay['status']} with {replay['kernel']} "
              f"({_ratio(replay['mismatch_ratio'])})"
              + (" [another kernel or oracle]" if replay.get("substitute") else ""))
    return 0


def cmd_corpus_export(args: argparse.Namespace) -> int:
    """Write a standalone reproducer script for one finding."""
    from kfuzz.export import reproducer

    store = CorpusStore(args.db, read_only=True)
    row = store.get(store.resolve_id(args.id))
    script = reproducer(row)
    if args.out:
        out = Path(args.out)
        if out.is_dir():
            raise KfuzzError(f"-o {args.out!r} is a directory; pass a file path")
        if out.exists() and not args.force:
            raise KfuzzError(f"-o {args.out!r} exists; pass --force to overwrite it")
        if not out.parent.is_dir():
            raise KfuzzError(f"-o {args.out!r}: no directory {str(out.parent)!r}; create it first")
        try:
            out.write_text(script)
            os.chmod(out, 0o755)
        except OSError as exc:
            raise KfuzzError(f"-o {args.out!r}: cannot write it ({exc.strerror})") from None
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


# The names `kfuzz.cli_parser` gives the commands.
COMMANDS = {"targets": cmd_targets, "run": cmd_run, "replay": cmd_replay, "report": cmd_report,
            "corpus_list": cmd_corpus_list, "corpus_show": cmd_corpus_show,
            "corpus_export": cmd_corpus_export, "corpus_merge": cmd_corpus_merge,
            "corpus_rm": cmd_corpus_rm}


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
    command = COMMANDS[args.func] if isinstance(args.func, str) else args.func
    if argv is None and args.command in ("run", "replay") and not args.isolate:
        from kfuzz import crashhint

        crashhint.install()  # a kernel that kills this process gets a word and a hint
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

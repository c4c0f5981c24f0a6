"""`kfuzz corpus`: list, show, export, remove and merge stored findings. Imports no torch:
these commands only read and write the corpus."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfuzz.cli.parser import KfuzzParser, db_option, json_option, plugin_option
from kfuzz.enums import Failure, FindingStatus, Kind
from kfuzz.errors import KfuzzError
from kfuzz.judge.comparator import Comparator, ComparatorError
from kfuzz.present.attribution import attribution_lines
from kfuzz.present.text import percent, table
from kfuzz.store.corpus import DEFAULT_DB, CorpusStore
from kfuzz.store.rows import json_safe, short_id

if TYPE_CHECKING:
    from kfuzz.cli.parser import Subcommands


def add_parser(sub: Subcommands) -> None:
    """Add the `corpus` command and its subcommands to the subcommands `sub`."""
    corpus = sub.add_parser("corpus", help="inspect the corpus",
                            description="Inspect, export, remove and merge stored findings.")
    csub = corpus.add_subparsers(dest="corpus_command", metavar="SUBCOMMAND",
                                 parser_class=KfuzzParser)
    corpus.set_defaults(func=lambda args: corpus.error("choose list, show, export, rm or merge"))

    p = csub.add_parser("list", help="list findings", description="List stored findings, "
                        "newest first.")
    db_option(p)
    _filter_options(p)
    p.add_argument("--failure", choices=[f.value for f in Failure], help="only this failure")
    p.add_argument("--kind", choices=[k.value for k in Kind], help="only this kind")
    p.add_argument("--limit", type=int, metavar="N", help="at most N rows")
    json_option(p)
    p.set_defaults(func=cmd_corpus_list)

    p = csub.add_parser("show", help="show one finding", description="Show one finding: "
                        "case, comparator, metrics, worst points, replays.")
    p.add_argument("id", metavar="ID", help="fingerprint or a unique prefix")
    db_option(p)
    json_option(p)
    p.set_defaults(func=cmd_corpus_show)

    _add_export(csub)

    p = csub.add_parser("rm", help="remove findings",
                        description="Remove findings, with their replays, by id or by "
                        "--target/--kernel/--status.")
    p.add_argument("ids", nargs="*", metavar="ID", help="fingerprints or unique prefixes")
    db_option(p)
    _filter_options(p)
    json_option(p)
    p.set_defaults(func=cmd_corpus_rm)

    p = csub.add_parser(
        "merge", help="merge corpora from several machines",
        description="Merge corpora into one, idempotently: findings by fingerprint (earliest "
        "first_seen, latest last_seen, status of the latest event, each corpus's sightings "
        "counted once), replays and runs without duplicates. Sources are only read.")
    p.add_argument("sources", nargs="+", metavar="DB", help="corpus databases to merge in")
    p.add_argument("--into", default=DEFAULT_DB, metavar="PATH",
                   help=f"corpus to merge into, created if absent (default {DEFAULT_DB})")
    json_option(p)
    p.set_defaults(func=cmd_corpus_merge)


def _add_export(csub: Subcommands) -> None:
    """Add `corpus export` to the corpus subcommands `csub`."""
    p = csub.add_parser("export", help="write a standalone reproducer script",
                        description="Write a Python script that reproduces one finding with "
                        "nothing but torch and kfuzz installed, from any directory; with "
                        "--inputs, the case's input values as a .npz for a reproducer that "
                        "needs neither.")
    p.add_argument("id", metavar="ID", help="fingerprint or a unique prefix")
    db_option(p)
    p.add_argument("-o", "--out", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--inputs", metavar="FILE.npz",
                   help="write the case's input values as a NumPy .npz (then the script only "
                   "with -o), as kfuzz's executor materialises them, for a reproducer "
                   "without kfuzz: one array per input, named as the kernel's argument; a "
                   "dtype NumPy lacks as its raw bits (bfloat16 as uint16, float8 as uint8); "
                   "key __kfuzz__ holds JSON: each input's dtype, stored_as and shape, the "
                   "params (keyword arguments), signature, target, kernel, oracle and case. "
                   "Load with numpy.load(FILE); json.loads(npz['__kfuzz__'].item())")
    p.add_argument("--standalone", action="store_true",
                   help="for a built-in ONNX Runtime or JAX kernel: a script that needs only "
                   "NumPy and that library (the one-node model or the JAX call, the inputs "
                   "and float64 expected values inline, the check); exit 1 while it fails")
    p.add_argument("--force", action="store_true", help="overwrite FILE(s) that exist")
    plugin_option(p, "the script loads this plugin instead of a recorded one of the same "
                  "file or module name (a corpus made under another checkout path; the "
                  "script takes --plugin too); repeatable, not imported here", metavar="FILE")
    p.set_defaults(func=cmd_corpus_export)


def _filter_options(p: argparse.ArgumentParser) -> None:
    """Add `--target`, `--kernel` and `--status`, which select findings."""
    p.add_argument("--target", metavar="T", help="only this target's findings")
    p.add_argument("--kernel", metavar="K", help="only findings of this kernel")
    p.add_argument("--status", choices=[s.value for s in FindingStatus],
                   help="only findings of this status")


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
                {k: json_safe(row.get(k)) for k in ("fingerprint", "status", "kind", "failure",
                                         "signature", "target", "kernel", "oracle",
                                         "mismatch_ratio", "size", "times_seen", "first_seen",
                                         "last_seen")}))
        out.write("\n]}\n")
        return 0
    headers = ["id", "status", "kind", "failure", "target", "kernel", "oracle", "ratio", "size",
               "seen", "last_seen", "signature"]
    # A row stored before signatures existed has none ("-").
    cells = [[short_id(r["fingerprint"]), r["status"], r["kind"], r["failure"], r["target"],
              r["kernel"], r["oracle"], percent(r["mismatch_ratio"]), str(r["size"]),
              str(r["times_seen"]), r["last_seen"], r.get("signature") or "-"] for r in rows]
    print(table(cells, headers) if cells else "no findings")
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
              + " ".join(short_id(k) for k in keys))
    return 0


# What `kfuzz.execute.executor.error_text` puts between an error's message and the kernel's frames
# (its FRAMES_HEADER; this module imports no torch), and how it writes one frame.
FRAMES_HEADER = "Traceback (kernel frames, most recent call last):"
_FRAME = re.compile(r'^  File "(?P<file>.*)", line (?P<line>\d+), in (?P<function>.*)$')


def error_frames(error: Any) -> tuple[Any, list[dict[str, Any]]]:
    """(the message, the kernel's frames [{"file", "line", "function"}], outermost first) of
    a stored error text that ends with them (`kfuzz.execute.executor.error_text`); (error, []) for
    any other text, None included."""
    if not isinstance(error, str):
        return error, []
    message, sep, tail = error.rpartition("\n" + FRAMES_HEADER + "\n")
    if not sep:
        return error, []
    frames = []
    for line in tail.splitlines():
        found = _FRAME.match(line)
        if found is None:
            return error, []
        frames.append({"file": found["file"], "line": int(found["line"]),
                       "function": found["function"]})
    return message, frames


def cmd_corpus_show(args: argparse.Namespace) -> int:
    """Show one finding in full."""
    store = CorpusStore(args.db, read_only=True)
    row = store.get(store.resolve_id(args.id))
    row["replays"] = [
        {k: r.get(k) for k in ("at", "status", "kernel", "oracle", "mismatch_ratio", "error",
                               "substitute")}
        for r in store.replays(row["fingerprint"], newest_first=True, limit=20)]
    error, frames = error_frames(row.get("error"))
    if frames:
        row["error_frames"] = frames
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    for key in ("fingerprint", "target", "kernel", "oracle", "kind", "failure", "signature",
                "status",
                "first_seen", "last_seen", "times_seen", "last_replay", "last_replay_status",
                "size", "device"):
        if row.get(key) is not None:
            print(f"{key:19} {row[key]}")
    if error is not None:
        print(f"{'error':19} " + str(error).replace("\n", "\n" + " " * 20))
    for i, frame in enumerate(frames):
        print(f"{'kernel frames' if i == 0 else '':19} File \"{frame['file']}\", line "
              f"{frame['line']}, in {frame['function']}"
              + (" (raised here)" if i == len(frames) - 1 else ""))
    print(f"{'mismatch_ratio':19} {percent(row.get('mismatch_ratio'))}")
    print(f"{'case':19} {json.dumps(row['case'])}")
    if row.get("comparator"):
        print(f"{'comparator':19} {json.dumps(row['comparator'])}")
    if row.get("shrink"):
        print(f"{'shrink':19} {json.dumps(row['shrink'])}")
    for line in attribution_lines(row.get("attribution")):
        print(line)
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
              f"({percent(replay['mismatch_ratio'])})"
              + (" [another kernel or oracle]" if replay.get("substitute") else ""))
    return 0


def _writable(flag: str, value: str, force: bool) -> Path:
    """The path `value` of option `flag` checked for writing: not a directory, in a directory
    that exists, not an existing file unless `force`. Raises KfuzzError (one line)."""
    out = Path(value)
    if out.is_dir():
        raise KfuzzError(f"{flag} {value!r} is a directory; pass a file path")
    if out.exists() and not force:
        raise KfuzzError(f"{flag} {value!r} exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise KfuzzError(f"{flag} {value!r}: no directory {str(out.parent)!r}; create it first")
    return out


def cmd_corpus_export(args: argparse.Namespace) -> int:
    """Write a standalone reproducer script for one finding (stdout or -o), and with --inputs
    the case's input values as a .npz (then the script only with -o)."""
    from kfuzz.present.export import reproducer

    store = CorpusStore(args.db, read_only=True)
    row = store.get(store.resolve_id(args.id))
    script = reproducer(row, args.plugin or [])  # a --plugin stands in for a recorded one
    if getattr(args, "standalone", False):
        from kfuzz.present.standalone import standalone

        script = standalone(row)
    out = _writable("-o", args.out, args.force) if args.out else None
    inputs = _writable("--inputs", args.inputs, args.force) if args.inputs else None
    if out is not None and inputs is not None and out.resolve() == inputs.resolve():
        raise KfuzzError(f"-o and --inputs name one file, {args.out!r}; give two")
    if inputs is not None:
        from kfuzz.present.export import INPUTS_META, input_arrays, write_npz
        from kfuzz.targets import registry as targets

        targets.load_plugins(args.plugin or [])  # stand-ins for the recorded plugins
        arrays = input_arrays(row)
        try:
            write_npz(args.inputs, arrays)
        except OSError as exc:
            raise KfuzzError(f"--inputs {args.inputs!r}: cannot write it ({exc.strerror})") from None
        meta = json.loads(arrays[INPUTS_META].item())["inputs"]
        described = ", ".join(
            f"{name} {m['dtype']}{list(m['shape'])}"
            + (f" (as {m['stored_as']} bits)" if m["stored_as"] != m["dtype"] else "")
            for name, m in meta.items())
        print(f"wrote {args.inputs}: {described}; metadata under {INPUTS_META!r}",
              file=sys.stderr)
    if out is not None:
        try:
            out.write_text(script)
            os.chmod(out, 0o755)
        except OSError as exc:
            raise KfuzzError(f"-o {args.out!r}: cannot write it ({exc.strerror})") from None
        print(f"wrote {args.out}; run it with: python {args.out}", file=sys.stderr)
    elif inputs is None:
        sys.stdout.write(script)
    return 0


def cmd_corpus_merge(args: argparse.Namespace) -> int:
    """Merge corpora into --into, idempotently."""
    from kfuzz.store.merge import check_sources, merge_corpora

    check_sources(args.sources)  # before --into is created, so a bad source leaves no file
    store = CorpusStore(args.into, fix="copy it somewhere writable and pass --into COPY")
    stats = merge_corpora(store, args.sources)
    total = store.count()
    if args.json:
        print(json.dumps({"into": str(args.into), "findings": total,
                          "sources": [s.to_dict() for s in stats]}, indent=2))
        return 0
    rows = [[s.source, str(s.findings_added), str(s.findings_updated), str(s.replays_added),
             str(s.runs_added)] for s in stats]
    print(table(rows, ["source", "new findings", "updated", "replays added", "runs added"]))
    print(f"\n{args.into}: {total} findings")
    return 0

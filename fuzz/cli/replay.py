"""`kfuzz replay`: rerun stored findings and tell which still fail, which are fixed and which
could not be run here."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kfuzz.cli.parser import (
    STAND_IN_PLUGIN_HELP,
    check_device,
    db_option,
    device_option,
    isolation_options,
    json_option,
    junit_option,
    plugin_option,
    variant_options,
)
from kfuzz.errors import KfuzzError
from kfuzz.present.text import percent, table
from kfuzz.store.corpus import CorpusStore
from kfuzz.store.rows import short_id
from kfuzz.targets import registry

if TYPE_CHECKING:
    from kfuzz.cli.parser import Subcommands
    from kfuzz.store.replay import ReplayResult

REPLAY_EXIT = ("exit status: 0 every replayed finding passes, 1 one still fails, 2 usage error "
               "(also a --target or --id that matches no finding), 3 a finding could not be "
               "replayed (unless --accept-errors)")


def add_parser(sub: Subcommands) -> None:
    """Add the `replay` command to the subcommands `sub`."""
    p = sub.add_parser(
        "replay", help="rerun stored findings",
        description="Rerun stored findings from their stored cases, loading the plugins each "
        "recorded; mark each still failing (open), fixed, or error. With --kernel or --oracle "
        "the replays are recorded as made with another kernel and leave the findings' status "
        "alone.", epilog=REPLAY_EXIT)
    db_option(p)
    p.add_argument("--target", metavar="T", help="only this target's findings")
    p.add_argument("--id", metavar="ID", help="only this finding (a fingerprint prefix)")
    variant_options(p, "replay with this kernel instead of the stored one",
                    "replay with this oracle instead of the stored one")
    isolation_options(p)
    device_option(p, "where kernels run")
    p.add_argument("--accept-errors", action="store_true",
                   help="findings that cannot be replayed here do not set the exit status "
                   "(default: exit 3)")
    p.add_argument("--no-record", action="store_true",
                   help="print the verdicts but record nothing in the corpus, which is only "
                   "read (a committed or read-only corpus)")
    json_option(p)
    junit_option(p, "replayed finding")
    plugin_option(p, STAND_IN_PLUGIN_HELP)
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay stored findings. Exit status: 0 every replayed finding passes, 1 one still
    fails, 3 one could not be replayed (unless --accept-errors), 2 a usage error (including
    a --target or --id that matches no finding)."""
    from kfuzz.run.executors import make_executor
    from kfuzz.store.replay import exit_code, replay

    registry.load_plugins(args.plugin or [])  # each stands in for a recorded plugin of its name
    check_device(args.device)
    if not Path(args.db).exists():
        raise KfuzzError(f"no corpus at {args.db!r}; run `kfuzz run` first or pass --db")
    # --no-record reads the corpus only, so a read-only one replays too.
    store = CorpusStore(args.db, read_only=args.no_record,
                        fix="pass --no-record to replay without recording, or copy it "
                        "somewhere writable and pass --db COPY")
    executor = make_executor(isolate=args.isolate, case_timeout=args.case_timeout,
                             plugins=args.plugin or [])
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
        _print_verdicts(results, no_record=args.no_record)
    for r in results:  # in full: the table cuts errors short
        if r.status == "error":
            print(f"kfuzz: finding {short_id(r.fingerprint)} could not be replayed: {r.error}",
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


def _print_verdicts(results: list[ReplayResult], *, no_record: bool) -> None:
    """The verdicts as a table, their counts, and what was recorded."""
    from kfuzz.store.replay import STATUS_WORDS

    rows = [[short_id(r.fingerprint), STATUS_WORDS[r.status], r.target, r.kernel, r.oracle,
             percent(r.stored_ratio), percent(r.mismatch_ratio),
             (r.error or "").split("\n")[0][:80]]
            for r in results]
    print(table(rows, ["id", "verdict", "target", "kernel", "oracle", "stored", "now", "error"]))
    counts = {w: sum(r.status == s for r in results) for s, w in STATUS_WORDS.items()}
    print("\n" + ", ".join(f"{n} {w}" for w, n in counts.items()))
    if no_record:
        print("nothing recorded (--no-record): the corpus is unchanged")
    elif any(r.substitute for r in results):
        print("replayed with another kernel or oracle than the findings' own: their "
              "status is left as it was")

"""`kfuzz report`: write the HTML page and Markdown summary of a corpus, with plots."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from kfuzz.cli.parser import STAND_IN_PLUGIN_HELP, check_device, db_option, device_option, plugin_option
from kfuzz.errors import KfuzzError
from kfuzz.store.corpus import CorpusStore
from kfuzz.targets import registry

if TYPE_CHECKING:
    from kfuzz.cli.parser import Subcommands


def add_parser(sub: Subcommands) -> None:
    """Add the `report` command to the subcommands `sub`."""
    p = sub.add_parser(
        "report", help="write an HTML report with plots and a Markdown summary",
        description="Write DIR/index.html and DIR/summary.md: per target the findings, "
        "mismatch ratios, worst points, error histograms (absolute, relative, ULP; each "
        "plotted finding's case is run again for them, without recording a replay) and the "
        "mismatch ratio across runs and replays, as PNG plots in DIR/plots.")
    db_option(p)
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write the report in")
    p.add_argument("--max-plots", type=int, default=8, metavar="N",
                   help="error histograms for at most N findings per target, open and worst "
                   "first (default 8)")
    device_option(p, "where kernels run for the histograms (default cpu)")
    plugin_option(p, STAND_IN_PLUGIN_HELP)
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML page and Markdown summary of a corpus. Returns 0; raises KfuzzError for
    a missing corpus, a bad --max-plots or --out, or matplotlib missing."""
    from kfuzz.present.report import write_report

    registry.load_plugins(args.plugin or [])  # each stands in for a recorded plugin of its name
    check_device(args.device)
    if args.max_plots < 0:
        raise KfuzzError(f"--max-plots {args.max_plots} must be 0 or more")
    if not Path(args.db).exists():
        raise KfuzzError(f"no corpus at {args.db!r}; pass --db PATH")
    store = CorpusStore(args.db, read_only=True)  # a read-only corpus too
    files = write_report(store, args.out, device=args.device, max_plots=args.max_plots)
    print(f"wrote {files.html} and {files.markdown} ({len(files.plots)} plots, "
          f"{files.findings} findings on {files.targets} targets)")
    return 0

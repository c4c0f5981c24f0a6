"""`kfuzz targets`: list targets with their kernels, oracles, signature and default
comparators; with --names, only their names, importing no kernel."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from kfuzz.cli.parser import json_option, plugin_option
from kfuzz.present.summary import targets_text
from kfuzz.targets import registry

if TYPE_CHECKING:
    from kfuzz.cli.parser import Subcommands


def add_parser(sub: Subcommands) -> None:
    """Add the `targets` command to the subcommands `sub`."""
    p = sub.add_parser("targets", help="list targets, kernels, oracles and comparators",
                       description="List every target (or the ones named) with its kernels, "
                       "oracles, input signature and default comparator per output.")
    p.add_argument("target", nargs="*", metavar="TARGET",
                   help="only these targets (an unknown name is an error, with suggestions)")
    json_option(p)
    p.add_argument("--names", action="store_true",
                   help="only the targets' names, one a line (with --json: {\"targets\": "
                   "[names]}); fast: imports no kernel")
    plugin_option(p)
    p.set_defaults(func=cmd_targets)


def cmd_targets(args: argparse.Namespace) -> int:
    """List targets with kernels, oracles, signature and default comparator; with --names, only
    their names, importing no kernel. Returns the exit status, 0; raises UnknownTarget (a
    KfuzzError, with suggestions) for a name no target has."""
    for plugin in args.plugin or []:
        registry.load_plugin(plugin)
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

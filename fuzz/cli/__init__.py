"""The `kfuzz` command: a thin face over the library (`app.main`), its grammar (`parser`)
and the corpus subcommands (`corpus`)."""

from kfuzz.cli.app import main

__all__ = ["main"]

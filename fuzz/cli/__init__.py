"""The `kfuzz` command: a thin face over the library. `app.main` is the entry point; each
command group has its module (`run`, `replay`, `report`, `targets`, `corpus`) with its
subparser and command function; `parser` holds the shared grammar and flags."""

from kfuzz.cli.app import main

__all__ = ["main"]

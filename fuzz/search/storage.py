"""Where Hypothesis keeps its files while kfuzz runs it (`HypothesisStorage`)."""

from __future__ import annotations

from typing import Any


class HypothesisStorage:
    """While it is entered, Hypothesis keeps its files in kfuzz's cache directory
    ($XDG_CACHE_HOME/kfuzz/hypothesis, else ~/.cache/kfuzz/hypothesis), not in `.hypothesis/`
    of the working directory: kfuzz keeps no example database (database=None), but Hypothesis
    caches the constants it reads from local source files there while it generates
    (`hypothesis.internal.constants_ast`). A place the user chose (HYPOTHESIS_STORAGE_DIRECTORY,
    or `set_hypothesis_home_dir`) is left alone, and the previous one comes back on exit, for
    the user's own Hypothesis tests in the same process. Re-entrant."""

    def __enter__(self) -> None:
        import os
        from pathlib import Path

        from hypothesis import configuration

        self.previous: Any = None
        self.changed = False
        setter = getattr(configuration, "set_hypothesis_home_dir", None)
        if setter is None or os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
            return
        self.previous = getattr(configuration, "__hypothesis_home_directory", None)
        default = getattr(configuration, "__hypothesis_home_directory_default", None)
        if self.previous is not None and self.previous != default:
            return  # chosen by the user, or by an enclosing HypothesisStorage
        try:
            cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        except RuntimeError:  # no home directory
            import tempfile

            cache = Path(tempfile.gettempdir()) / f"kfuzz-{os.getuid()}"
        setter(cache / "kfuzz" / "hypothesis")
        self.changed = True

    def __exit__(self, *exc: object) -> None:
        if self.changed:
            from hypothesis import configuration

            configuration.set_hypothesis_home_dir(self.previous)

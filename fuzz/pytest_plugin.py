"""pytest plugin (entry point `pytest11: kfuzz`): replay a corpus as a test suite.

    pytest --kfuzz-db corpus/corpus.db [--kfuzz-target T] [--kfuzz-kernel K]

collects one test per stored finding, named `target[kernel-oracle-shortid]`, and replays it
through `kfuzz.store.replay` (so the replay is recorded in the corpus, as `kfuzz replay` does, unless
--kfuzz-no-record, which only reads it: a committed or read-only corpus): a finding that still
fails fails its test, one that passes now (fixed) passes. A finding that cannot be run here
(unknown target, a recorded plugin that is not where it was, malformed row) is a test *error*
with the reason (it is replayed in the test's setup). A --kfuzz-plugin stands in for a recorded
plugin of the same file or module name. Every item carries the marker `kfuzz`, so `-m kfuzz`
selects only these. Collection only reads the file.

Without --kfuzz-db the plugin does nothing, and importing it imports neither torch nor the
engine: it is loaded into every pytest run in an environment where kfuzz is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_STASH_PATH = pytest.StashKey[Path]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the --kfuzz-* options."""
    group = parser.getgroup("kfuzz", "replay a kfuzz corpus, one test per stored finding")
    group.addoption("--kfuzz-db", metavar="PATH",
                    help="corpus database whose findings to replay as tests")
    group.addoption("--kfuzz-target", metavar="T", help="only this target's findings")
    group.addoption("--kfuzz-kernel", metavar="K",
                    help="replay with this kernel instead of each finding's stored one")
    group.addoption("--kfuzz-device", metavar="cpu|cuda", default="cpu",
                    help="where kernels run (default cpu)")
    group.addoption("--kfuzz-plugin", metavar="FILE_OR_MODULE", action="append",
                    help="import a module that registers targets (repeatable); it stands in "
                    "for a plugin a finding recorded under the same file or module name")
    group.addoption("--kfuzz-no-record", action="store_true",
                    help="record no replay: the corpus is only read and left unchanged (for a "
                    "committed or read-only corpus)")


def pytest_configure(config: pytest.Config) -> None:
    """With --kfuzz-db, check the path and add it to the paths pytest collects."""
    option = config.getoption("kfuzz_db", default=None)
    if not option:
        return
    path = Path(option).resolve()
    if not path.is_file():
        raise pytest.UsageError(
            f"--kfuzz-db {option!r}: no such file; pass a corpus written by `kfuzz run`"
        )
    config.stash[_STASH_PATH] = path
    config.addinivalue_line("markers", "kfuzz: a stored kfuzz finding replayed from --kfuzz-db")
    if all(Path(arg.split("::")[0]).resolve() != path for arg in config.args):
        config.args.append(str(path))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect the --kfuzz-db file as a `CorpusFile`; leave every other file alone."""
    path = parent.config.stash.get(_STASH_PATH, None)
    if path is None or file_path.resolve() != path:
        return None
    return CorpusFile.from_parent(parent, path=file_path)


def _read_findings(path: Path, target: str | None) -> list[dict[str, Any]]:
    """The findings rows that name the tests, read without writing to the file (collection
    alone must leave a committed corpus unchanged). Raises CorpusError."""
    from kfuzz.store.corpus import CorpusStore

    with CorpusStore(path, read_only=True) as store:
        return list(store.findings(target=target))


class FindingFailed(Exception):
    """A replayed finding still fails, or could not be run."""


class CorpusFile(pytest.File):
    """The corpus database: one `FindingItem` per stored finding, newest first."""

    def collect(self) -> Any:
        """Open the corpus and yield its findings. A corpus that cannot be read is a
        collection error with kfuzz's one-line message."""
        from kfuzz.errors import KfuzzError
        from kfuzz.present.junit import finding_name
        from kfuzz.targets import registry

        config = self.config
        try:
            registry.load_plugins(config.getoption("kfuzz_plugin") or [])  # stand-ins too
            rows = _read_findings(self.path, config.getoption("kfuzz_target"))
        except KfuzzError as exc:
            raise self.CollectError(f"kfuzz: {exc}") from None
        kernel = config.getoption("kfuzz_kernel")
        for row in rows:
            name = finding_name(row["target"] or "?", kernel or row["kernel"] or "?",
                                row["oracle"] or "?", row["fingerprint"])
            item = FindingItem.from_parent(self, name=name, fingerprint=row["fingerprint"])
            item.add_marker("kfuzz")
            item.user_properties += [("fingerprint", row["fingerprint"]),
                                     ("stored_status", str(row["status"]))]
            yield item

    def setup(self) -> None:
        """Open the corpus once for all of its findings' replays (read-only with
        --kfuzz-no-record)."""
        from kfuzz.errors import KfuzzError
        from kfuzz.execute.executor import InProcessExecutor
        from kfuzz.store.corpus import CorpusStore

        try:
            self.store = CorpusStore(
                self.path, read_only=self.config.getoption("kfuzz_no_record"),
                fix="pass --kfuzz-no-record to replay without recording, or copy it somewhere "
                "writable and pass --kfuzz-db COPY")
        except KfuzzError as exc:  # each finding's test an error with this one line
            pytest.fail(f"kfuzz: {exc}", pytrace=False)
        self.executor = InProcessExecutor()

    def teardown(self) -> None:
        """Close the corpus."""
        store = getattr(self, "store", None)
        if store is not None:
            store.close()


class FindingItem(pytest.Item):
    """One stored finding, replayed when the test runs."""

    def __init__(self, *, fingerprint: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fingerprint = fingerprint

    def setup(self) -> None:
        """Replay the finding (recording the replay unless --kfuzz-no-record). One that
        cannot be replayed here fails the setup: pytest reports it as an error, not as a
        failing finding."""
        from kfuzz.store.replay import replay
        from kfuzz.store.rows import short_id

        super().setup()
        corpus = self.parent
        if not isinstance(corpus, CorpusFile):
            raise TypeError(f"a kfuzz finding belongs to a corpus file, not {corpus!r}")
        self.result = replay(
            corpus.store, finding_id=self.fingerprint,
            kernel=self.config.getoption("kfuzz_kernel"),
            device=self.config.getoption("kfuzz_device"), executor=corpus.executor,
            record=not self.config.getoption("kfuzz_no_record"),
        )[0]
        if self.result.status == "error":
            pytest.fail(f"finding {short_id(self.fingerprint)} could not be replayed: "
                        f"{self.result.error}", pytrace=False)

    def runtest(self) -> None:
        """The replay's verdict. Raises FindingFailed when the finding still fails."""
        from kfuzz.present.junit import outputs_text
        from kfuzz.present.text import percent
        from kfuzz.store.rows import short_id

        corpus = self.parent
        assert isinstance(corpus, CorpusFile)
        result = self.result
        if result.status == "pass":
            return
        detail = outputs_text(result.outputs, result.error)
        from kfuzz.present.attribution import attribution_lines

        blame = attribution_lines(corpus.store.get(self.fingerprint).get("attribution"))
        if blame:
            detail += "\n\n" + "\n".join(blame)
        raise FindingFailed(
            f"finding {short_id(self.fingerprint)} still fails: {result.target} kernel "
            f"{result.kernel} vs {result.oracle}, mismatch ratio "
            f"{percent(result.mismatch_ratio or 0)} (stored {percent(result.stored_ratio)})"
            f"\n\n{detail}\n\n"
            f"details: kfuzz corpus show {short_id(self.fingerprint)} --db {corpus.path}"
        )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """kfuzz's own message for a finding that fails; a traceback for anything else."""
        if isinstance(excinfo.value, FindingFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the test comes from, for pytest's report headers."""
        return self.path, None, f"kfuzz finding {self.name}"

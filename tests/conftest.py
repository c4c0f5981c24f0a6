from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import settings
from kfuzz.cli.app import main

# No example database for the tests' own @given and find(): an example saved by one test (a
# strategy is cached, so two tests can share one) must not decide what another one finds.
settings.register_profile("kfuzz-tests", database=None)
settings.load_profile("kfuzz-tests")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "corpus.db"


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def kfuzz(capsys):
    """Run the CLI in-process: kfuzz("run", "ops.rmsnorm", ...) -> CliResult."""

    def run(*argv: str) -> CliResult:
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own exits (--help, usage errors)
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler for the test, restored after: a test runner started in the
    background inherits SIGINT ignored, and a campaign leaves an ignored SIGINT ignored."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)

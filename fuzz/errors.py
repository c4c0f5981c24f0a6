"""Named errors. Each one is a usage or configuration problem that the CLI turns into a
one-line message and exit code 2; the message names the culprit and, where it can, the fix."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from typing import Any


class KfuzzError(Exception):
    """Base of every error the CLI reports as a one-line message with exit code 2."""


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """"; did you mean 'x'?" naming the known name closest to a mistyped `name`, or "" when
    none is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


class UnknownTarget(KfuzzError):
    """A target name that is not registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"no target {name!r}; known: {', '.join(sorted(known))} "
            f"(add your own with --plugin FILE_OR_MODULE){did_you_mean(name, known)}"
        )


class UnknownVariant(KfuzzError):
    """A kernel or oracle name that a target does not have."""

    def __init__(self, role: str, name: str, target: str, known: list[str]) -> None:
        super().__init__(
            f"target {target!r} has no {role} {name!r}; known: {', '.join(known)} "
            f"(or pass --{role} module:function){did_you_mean(name, known)}"
        )


class BadCallable(KfuzzError):
    """A `module:function` reference that cannot be imported or is not callable."""


class PluginError(KfuzzError):
    """A plugin file or module that cannot be loaded or registers a bad target."""


class ContractViolation(KfuzzError):
    """A kernel or oracle broke its target's output contract (names, shape, dtype)."""


class CorpusError(KfuzzError):
    """A corpus database that cannot be opened, is corrupt, or is of an unknown schema."""


class CaseError(KfuzzError):
    """A case that does not fit its target (missing or malformed fields)."""


class KernelUnavailable(KfuzzError):
    """A kernel that cannot run in this process or on this device (a missing optional package,
    a CUDA-only backend asked to run on the CPU); the message names the kernel, the device and
    the fix."""


class OptionError(KfuzzError):
    """A run option with a bad value. The message names the option by its keyword (`field`,
    or `subject` when given, e.g. "pins['shape']"); `flag_message()` names the command-line
    flag instead (`flag`, default the field with dashes)."""

    def __init__(self, field: str, value: object, problem: str, *, flag: str | None = None,
                 subject: str | None = None) -> None:
        # problem continues the sentence: " must be at least 1", ": no such field ...".
        super().__init__(f"{subject or f'{field}={value!r}'}{problem}")
        self.field, self.value, self.problem = field, value, problem
        self.flag, self.subject = flag or field.replace("_", "-"), subject

    def flag_message(self) -> str:
        """The message with the option written as its flag: `--max-examples 0 must be ...`."""
        return f"--{self.flag} {self.value}{self.problem}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Crosses process boundaries (Ray) whole, not as a bare message.
        return (functools.partial(type(self), flag=self.flag, subject=self.subject),
                (self.field, self.value, self.problem))


class OracleError(KfuzzError):
    """An oracle that raised: the reference could not judge the case, which is the oracle's
    fault, not the kernel's."""

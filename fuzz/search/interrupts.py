"""Interrupts a campaign notes as well as raises: Ctrl-C (and SIGTERM, where the caller made it
raise KeyboardInterrupt as the CLI does) raised where Python ignores exceptions (a
garbage-collector callback, such as Hypothesis' own) must still stop the campaign."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any


def catch_interrupts(note: Callable[[], None]) -> dict[int, Any]:
    """Make SIGINT and SIGTERM, where they raise KeyboardInterrupt the default way, call
    `note()` before raising it, so that the campaign can stop at its next case even when the
    exception is lost. Returns the handlers to `restore` (none off the main thread, where
    handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def interrupted(signum: int, frame: Any) -> None:
        note()
        raise KeyboardInterrupt

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is signal.default_int_handler:  # else the caller's own way stands
            previous[signum] = handler
            signal.signal(signum, interrupted)
    if previous:
        previous[_UNRAISABLE] = sys.unraisablehook
        sys.unraisablehook = _quiet_interrupts(sys.unraisablehook)
    return previous


_UNRAISABLE = -1  # key under which `previous` keeps the unraisable hook


def _quiet_interrupts(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """An unraisable hook that drops a lost KeyboardInterrupt: the campaign noted it and stops
    at its next case, so its traceback would only alarm. Anything else goes to `hook`."""
    def quiet(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            hook(unraisable)
    return quiet


def restore(previous: Mapping[int, Any]) -> None:
    """Put back the handlers (and the unraisable hook) `catch_interrupts` replaced."""
    for signum, handler in previous.items():
        if signum == _UNRAISABLE:
            sys.unraisablehook = handler
        else:
            signal.signal(signum, handler)

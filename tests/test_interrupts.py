"""A Ctrl-C that Python cannot raise (in a __del__ or a garbage-collector callback) still stops a
campaign, and prints no traceback."""

import gc
import signal
import sys

import pytest
from kfuzz.search.interrupts import catch_interrupts, restore


class _RaisesOnDelete:
    def __init__(self, exc):
        self.exc = exc

    def __del__(self):
        raise self.exc


def _lose(exc):
    _RaisesOnDelete(exc)  # freed at once: the exception is unraisable
    gc.collect()


pytestmark = pytest.mark.usefixtures("default_sigint")


def test_lost_keyboard_interrupt_is_dropped_other_lost_errors_are_not(monkeypatch):
    shown = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: shown.append(type(u.exc_value)))
    previous = catch_interrupts(lambda: None)
    try:
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        _lose(KeyboardInterrupt())
        _lose(ValueError("kept"))
    finally:
        restore(previous)
    assert shown == [ValueError]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    _lose(KeyboardInterrupt())  # outside a campaign, Python's own way again
    assert shown == [ValueError, KeyboardInterrupt]


def test_handler_notes_then_raises():
    noted = []
    previous = catch_interrupts(lambda: noted.append(True))
    try:
        handler = signal.getsignal(signal.SIGINT)
        try:
            handler(signal.SIGINT, None)
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("the handler must raise KeyboardInterrupt")
    finally:
        restore(previous)
    assert noted == [True]

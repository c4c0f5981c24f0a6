"""ONNX Runtime's stderr captured while a session is built: what the block writes to file
descriptor 2 comes back to it, none reaches the terminal, and each block gets its own text
only (the capture file is reused and emptied, not made anew per call). A failing run logs
nothing either: its error is the exception's message."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("onnxruntime")


def test_each_block_gets_what_it_wrote_and_nothing_reaches_the_terminal(capfd):
    from kfuzz.kernels import onnxruntime as ort

    with ort.captured_stderr() as first:
        os.write(2, b"first line\n")
    with ort.captured_stderr() as quiet:
        pass
    with ort.captured_stderr() as second:
        os.write(2, b"second\n")
    assert first == ["first line\n"]
    assert quiet == [""]
    assert second == ["second\n"]
    assert capfd.readouterr().err == ""


def test_a_large_log_comes_back_whole():
    from kfuzz.kernels import onnxruntime as ort

    text = b"".join(b"line %d\n" % i for i in range(20000))  # more than one read
    with ort.captured_stderr() as got:
        os.write(2, text)
    assert got == [text.decode()]


def test_kernel_calls_after_a_failure_run_clean(capfd):
    np = pytest.importorskip("numpy")
    from kfuzz.kernels import onnxruntime as ort

    x = np.ones((2, 4), dtype=np.float32)
    for _ in range(2):
        with pytest.raises(Exception, match="Invalid rank for input: scale"):
            ort.run("RMSNormalization", {"axis": -1, "epsilon": 1e-5}, x, x)
    assert np.allclose(ort.softmax(x), 0.25)
    with ort.captured_stderr() as after:
        pass
    assert after == [""]
    assert capfd.readouterr().err == ""

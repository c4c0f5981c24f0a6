"""Kernels that crash, hang or break their contract, for the fault tests
(importable as tests.faulty_kernels:NAME). Each fault depends only on the input's shape, so
that it is deterministic and shrinks."""

import ctypes
import os
import time

import torch


def _softmax_lowp(x):
    e = torch.exp(x - x.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


def crash_hang(x):
    """Aborts on 1 row length in 5, hangs on another 1 in 5, else an all-low-precision
    softmax."""
    cols = x.shape[-1]
    if cols % 5 == 3:
        os.abort()
    if cols % 5 == 2:
        time.sleep(3600)
    return _softmax_lowp(x)


def segfault_wide(x):
    """Dereferences NULL for rows of 50 or more columns."""
    if x.shape[-1] >= 50:
        ctypes.string_at(0)
    return torch.softmax(x.float(), -1).to(x.dtype)


def writes_input(x):
    """Correct output, but scribbles on its input when it has more than one row."""
    out = torch.softmax(x.float(), -1).to(x.dtype)
    if x.shape[0] > 1:
        x.zero_()
    return out


def aliases_input(x):
    """Computes in place and returns its input's memory."""
    return x.copy_(torch.softmax(x.float(), -1).to(x.dtype))


def prints_to_stdout(x):
    """Correct, but chatty: must not corrupt the worker protocol."""
    print("debug: kernel called with", tuple(x.shape))
    return torch.softmax(x.float(), -1).to(x.dtype)

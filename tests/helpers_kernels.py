"""Faulty kernels used by the tests (importable as tests.helpers_kernels:NAME)."""

import torch


def softmax_two_faults(x):
    if x.shape[-1] >= 100:
        raise ValueError("too wide")
    return (torch.softmax(x.float(), -1) * 1.5).to(x.dtype)


def softmax_wrong_dtype(x):
    return torch.softmax(x.float(), -1)


def identity(x):
    return x

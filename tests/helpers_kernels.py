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


def softmax_wrong_when_wide_or_one_sided(x):
    """Wrong on rows of 400 or more, and on rows of 20 or more whose logits are all >= 0."""
    y = torch.softmax(x.float(), -1)
    if x.shape[-1] >= 400 or (x.shape[-1] >= 20 and bool((x >= 0).all())):
        y = y * 1.5
    return y.to(x.dtype)


def softmax_that_warns(x):
    """A correct softmax that warns on every call, as a library warning about its inputs."""
    import warnings

    warnings.warn("a row to look at", RuntimeWarning, stacklevel=1)
    return torch.softmax(x.float(), dim=-1).to(x.dtype)

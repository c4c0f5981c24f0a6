"""The dtypes a case names, by name."""

from __future__ import annotations

import torch
from kfuzz.errors import CaseError

DTYPE_NAMES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "int64": torch.int64,
    "int32": torch.int32,
}


def dtype_of(name: str) -> torch.dtype:
    """The torch dtype called `name` ("bfloat16", ...). Raises CaseError for unknown names."""
    try:
        return DTYPE_NAMES[name]
    except (KeyError, TypeError):
        raise CaseError(
            f"unknown dtype {name!r}; choose from {', '.join(DTYPE_NAMES)}"
        ) from None

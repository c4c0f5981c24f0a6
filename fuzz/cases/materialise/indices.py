"""Versions 2 and 3: sparse index sets, position-stable. A token's indices depend on the token
and the row or slot numbers only: removing a token, a slot or a cache row leaves the others'
choices in place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from kfuzz.cases.materialise.base import index_spec
from kfuzz.cases.materialise.distributions import Fields
from kfuzz.cases.strategies import PADDINGS  # where a token's -1 padding sits
from kfuzz.errors import CaseError

# Sub-keys of the index set's fields (per token; per token and slot; per token and cache row).
_LENGTHS, _PICKS, _SCORES, _FAR, _SLOTS = 1, 2, 3, 4, 5
_DRAW = 0


def build_sparse_indices(fields: Fields, device: str, tokens: int,
                         spec: Mapping[str, Any]) -> torch.Tensor:
    """A [tokens, k] int32 index tensor on `device` from a
    `kfuzz.cases.strategies.sparse_index_sets` description, drawn from the input's `fields`.

    Per token: the first min(window, valid) slots are the most recent rows (n_rows-1 down),
    the next valid slots scattered rows (drawn without replacement unless `duplicates`), the
    rest -1. With `out_of_range`, about one valid slot in eight names a row >= n_rows.
    "padding" places the -1 entries: "end" (the default) after every valid slot; "split" as a
    producer that concatenates a window part and a top-k part, each padded on its own (slots
    [0, window) hold min(window, valid) recent rows then -1, slots [window, k) min(valid,
    k - window) scattered rows then -1);
    "holes" at slots chosen by a hash of (token, slot), anywhere in the row.
    Raises CaseError for a malformed description."""
    n, k, n_valid, window = index_spec(spec)
    padding = spec.get("padding", "end")
    if padding not in PADDINGS:
        raise CaseError(f"sparse index set padding {padding!r} is not one of "
                        f"{', '.join(PADDINGS)}")
    duplicates = bool(spec.get("duplicates"))
    if spec.get("ragged"):
        lengths = fields(_LENGTHS, (tokens,)).below(_DRAW, n_valid + 1).tolist()
    else:
        lengths = [n_valid] * tokens
    if duplicates:
        picks = fields(_PICKS, (tokens, k)).below(_DRAW, n)
    else:
        # Each token ranks every cache row by a hash of (token, row); the scattered rows are
        # the best-ranked rows outside the window.
        scores = fields(_SCORES, (tokens, n)).bits(_DRAW)
        picks = torch.sort(scores, dim=1, stable=True).indices
    far = fields(_FAR, (tokens, k)).uniform(_DRAW) < 0.125
    out = torch.full((tokens, k), -1, dtype=torch.int32, device=device)
    for t, valid in enumerate(lengths):
        valid = valid if duplicates else min(valid, n)
        w = min(window, valid, n)
        recent = torch.arange(n - 1, n - 1 - w, -1, dtype=torch.int64, device=device)
        # "split": the top-k part holds up to `valid` rows of its own, in its k - window slots.
        rest = min(valid, k - window) if padding == "split" and window < k else valid - w
        if duplicates:
            scattered = picks[t, w:w + rest]
        else:
            row_picks = picks[t]
            scattered = row_picks[row_picks < n - w][:rest]
        parts = [recent, scattered]
        if spec.get("sorted"):
            parts = [torch.sort(torch.cat(parts)).values] if padding == "end" else [
                torch.sort(part).values for part in parts]
        row = torch.cat(parts)
        if spec.get("out_of_range") and row.numel():
            row = torch.where(far[t, : row.numel()], row + n, row)
        row = row.to(torch.int32)
        if padding == "split" and window < k:
            out[t, : parts[0].numel()] = row[: parts[0].numel()]
            out[t, window: window + row.numel() - parts[0].numel()] = row[parts[0].numel():]
        else:
            out[t, : row.numel()] = row
    if padding == "holes":
        # Each token's slots reordered by a hash of (token, slot): -1 lands anywhere.
        order = torch.sort(fields(_SLOTS, (tokens, k)).bits(_DRAW), dim=1, stable=True).indices
        out = torch.gather(out, 1, order.to(device))
    return out

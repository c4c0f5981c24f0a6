"""A case's inputs built once for the reductions that read them (`inputs_of`): the rows its
index sets name (`kfuzz.shrink.rows`) and its tokens' valid lengths (`kfuzz.shrink.lengths`)
read the same inputs of the same case, which at production size take as long to build as a
run of the case."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from kfuzz.cases.materialise import generator_for
from kfuzz.execute.findings import canonical_json
from kfuzz.targets.registry import Target

# The last cases built (a case and a candidate of it): (target, canonical JSON of the case) ->
# its inputs (None: it cannot be built).
KEEP = 2
_last: OrderedDict[tuple[int, str, str], dict[str, torch.Tensor] | None] = OrderedDict()


def inputs_of(target: Target, case: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The inputs of `case` as `target` builds them, None when it cannot; the last KEEP
    cases' are kept, so that asking again for one of them builds nothing."""
    key = (id(target), target.name, canonical_json(case))
    if key in _last:
        _last.move_to_end(key)
        return _last[key]
    try:
        inputs = target.inputs(case, generator_for(case))
    except Exception:  # a case the target cannot build
        inputs = None
    _last[key] = inputs
    while len(_last) > KEEP:
        _last.popitem(last=False)
    return inputs

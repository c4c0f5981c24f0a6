"""`kfuzz corpus export ID`: a standalone reproducer script for one finding.

The script needs only torch and kfuzz. Every stored string reaches the script as a JSON string
literal (which is also a valid Python string literal), so a crafted corpus cannot inject code.
"""

from __future__ import annotations

import json
from typing import Any

TEMPLATE = '''#!/usr/bin/env python3
# kfuzz reproducer for finding {short}
#   target {target_c}, kernel {kernel_c}, oracle {oracle_c}
#   first seen {first_seen_c}, mismatch ratio when stored {ratio_c}
#   stored with {versions_c}
# Run:  python {{this file}} [--device cuda]
# Exit status: 1 while the case still fails, 0 once every output passes.
import json
import sys

import torch

from kfuzz import targets
from kfuzz.compare import Comparator, compare
from kfuzz.executor import as_outputs
from kfuzz.materialise import generator_for, to_device

TARGET = {target}
KERNEL = {kernel}
ORACLE = {oracle}
CASE = json.loads({case})
COMPARATOR = json.loads({comparator})  # None: each output's default comparator


def main() -> int:
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
    target = targets.get(TARGET)
    # Tensors come from the case's seed on the CPU, then move to the device: same bits as
    # when the finding was stored.
    inputs = target.inputs(CASE, generator_for(CASE))
    params = target.params(CASE)
    for name, tensor in inputs.items():
        print(f"input {{name}}: {{tensor.dtype}} {{list(tensor.shape)}}")
    kernel = targets.resolve(target, "kernel", KERNEL)
    oracle = targets.resolve(target, "oracle", ORACLE)
    with torch.no_grad():
        actual = as_outputs(kernel(**to_device(inputs, device), **params), target, KERNEL)
        expected = as_outputs(oracle(**inputs, **params), target, ORACLE)
    failed = False
    for name in target.outputs:
        comparator = (Comparator.from_dict(COMPARATOR) if COMPARATOR
                      else target.comparators[name])
        metrics = compare(actual[name], expected[name], comparator)
        verdict = "PASS" if metrics.passed else "FAIL"
        print(f"output {{name}}: {{verdict}} {{comparator.describe()}}")
        print(metrics.message)
        failed = failed or not metrics.passed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
'''


def _literal(value: Any) -> str:
    """A Python string literal holding `value` as JSON text."""
    return json.dumps(json.dumps(value, sort_keys=True))


def _comment(value: Any) -> str:
    return json.dumps(value, sort_keys=True)  # one line, ASCII, no newline can escape


def reproducer(row: dict[str, Any]) -> str:
    """The reproducer script for a decoded findings row (see `kfuzz.corpus.decode_row`)."""
    return TEMPLATE.format(
        short=row["fingerprint"][:12],
        target=json.dumps(row["target"]), kernel=json.dumps(row["kernel"]),
        oracle=json.dumps(row["oracle"]),
        target_c=_comment(row["target"]), kernel_c=_comment(row["kernel"]),
        oracle_c=_comment(row["oracle"]), first_seen_c=_comment(row.get("first_seen")),
        ratio_c=_comment(row.get("mismatch_ratio")), versions_c=_comment(row.get("versions")),
        case=_literal(row["case"]), comparator=_literal(row.get("comparator")),
    )

"""`kfuzz corpus export ID`: a standalone reproducer script for one finding.

The script needs only torch and kfuzz, and judges the case through kfuzz's executor, the code
the run judged it with, so the two cannot disagree. Every stored string reaches the script as a JSON string
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
# Run:  python {{this file}} [--device cpu|cuda]  (default: the device the run used, {device_c})
# Judged by kfuzz's executor, as the run judged it: the same comparator (the run's overrides
# on each output's default), the kernel on the device, a kernel named as the oracle there too.
# Exit status: 1 while the case still fails, 0 once every output passes, 2 if it cannot run.
import json
import sys

from kfuzz import targets
from kfuzz.compare import Comparator
from kfuzz.errors import KfuzzError
from kfuzz.executor import InProcessExecutor, Job, materialise_case

TARGET = {target}
KERNEL = {kernel}
ORACLE = {oracle}
CASE = json.loads({case})
COMPARATOR = json.loads({comparator})  # the run's overrides; None: each output's default
DEVICE = {device}
PLUGINS = json.loads({plugins})  # plugins the finding's target came from


def main() -> int:
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else DEVICE
    try:
        for plugin in PLUGINS:
            targets.load_plugin(plugin)
        inputs, _ = materialise_case(targets.get(TARGET), CASE)
        for name, tensor in inputs.items():
            print(f"input {{name}}: {{tensor.dtype}} {{list(tensor.shape)}}")
        job = Job(TARGET, KERNEL, ORACLE, CASE, COMPARATOR, device)
        outcome = InProcessExecutor().evaluate([job])[0]
    except KfuzzError as exc:
        print(f"kfuzz: error: {{exc}}", file=sys.stderr)
        return 2
    for name, metrics in outcome.outputs.items():
        verdict = "PASS" if metrics["passed"] else "FAIL"
        print(f"output {{name}}: {{verdict}} {{Comparator.from_dict(metrics['comparator']).describe()}}")
        print(metrics["message"])
    if outcome.error:
        print(f"{{outcome.status}}: {{outcome.error}}")
    return 1 if outcome.failed else 0


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
        plugins=_literal(list(row.get("plugins") or [])),
        device=json.dumps(row.get("device") or "cpu"), device_c=_comment(row.get("device") or "cpu"),
    )

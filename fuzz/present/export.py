"""`kfuzz corpus export ID`: a standalone reproducer script for one finding.

The script needs only torch and kfuzz, and judges the case through kfuzz's executor, the code
the run judged it with, so the two cannot disagree. Every stored string reaches the script as a JSON string
literal (which is also a valid Python string literal), so a crafted corpus cannot inject code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kfuzz.store.rows import short_id

TEMPLATE = '''#!/usr/bin/env python3
# kfuzz reproducer for finding {short}
#   target {target_c}, kernel {kernel_c}, oracle {oracle_c}
#   first seen {first_seen_c}, mismatch ratio when stored {ratio_c}
#   stored with {versions_c}
# Run:  python {{this file}} [--device cpu|cuda]  (default: the device the run used, {device_c})
#       [--plugin FILE]: loads FILE instead of a plugin below of the same file or module name
#       (one that has moved since; repeatable)
# Judged by kfuzz's executor, as the run judged it: the same comparator (the run's overrides
# on each output's default), the kernel on the device, a kernel named as the oracle there too.
# Exit status: 1 while the case still fails, 0 once every output passes, 2 if it cannot run.
import json
import sys

from kfuzz.targets import registry as targets
from kfuzz.judge.comparator import Comparator
from kfuzz.errors import KfuzzError
from kfuzz.execute.executor import InProcessExecutor, Job, materialise_case

TARGET = {target}
KERNEL = {kernel}
ORACLE = {oracle}
CASE = json.loads({case})
COMPARATOR = json.loads({comparator})  # the run's overrides; None: each output's default
DEVICE = {device}
PLUGINS = json.loads({plugins})  # plugins the finding's target came from (or their stand-ins)


def main() -> int:
    device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else DEVICE
    given = [sys.argv[i + 1] for i, arg in enumerate(sys.argv[:-1]) if arg == "--plugin"]
    try:
        targets.load_plugins(given)  # each stands in for a plugin below of its name
        targets.load_recorded_plugins(PLUGINS)
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


def reproducer(row: dict[str, Any], plugins: Sequence[str] = ()) -> str:
    """The reproducer script for a decoded findings row (see `kfuzz.store.corpus.decode_row`).
    plugins: `--plugin` files that stand in for the recorded plugins of the same file or
    module name (`kfuzz.targets.stand_in`; not imported here). Raises PluginError when two
    stand in for one."""
    from kfuzz.targets.registry import stand_in

    return TEMPLATE.format(
        short=short_id(row["fingerprint"]),
        target=json.dumps(row["target"]), kernel=json.dumps(row["kernel"]),
        oracle=json.dumps(row["oracle"]),
        target_c=_comment(row["target"]), kernel_c=_comment(row["kernel"]),
        oracle_c=_comment(row["oracle"]), first_seen_c=_comment(row.get("first_seen")),
        ratio_c=_comment(row.get("mismatch_ratio")), versions_c=_comment(row.get("versions")),
        case=_literal(row["case"]), comparator=_literal(row.get("comparator")),
        plugins=_literal([stand_in(p, plugins) for p in row.get("plugins") or []]),
        device=json.dumps(row.get("device") or "cpu"), device_c=_comment(row.get("device") or "cpu"),
    )


# `kfuzz corpus export ID --inputs FILE`: the case's input values as a NumPy .npz archive, for a
# reproducer written without kfuzz. One array per input, under the name the kernel takes it by,
# with the materialised values (`kfuzz.execute.executor.materialise_case`, the executor's own path);
# a dtype NumPy has no type for (bfloat16, the float8 types) as its raw bits in the unsigned
# integer of its width (bfloat16 -> uint16). The key INPUTS_META holds one JSON string: format,
# target, kernel, oracle, fingerprint, the kernel's signature, the case, its scalar params
# (keyword arguments) and, per input, {"dtype": the tensor's dtype, "stored_as": the array's
# dtype, "shape": [...]}.
INPUTS_META = "__kfuzz__"
INPUTS_FORMAT = "kfuzz-inputs/1"


def input_arrays(row: dict[str, Any]) -> dict[str, Any]:
    """The arrays of the .npz for a decoded findings row (see the comment above), after
    loading the plugins the finding recorded. Imports torch. Raises KfuzzError (an unknown
    target, a missing plugin, a case that does not fit its target)."""
    import numpy as np
    import torch
    from kfuzz.errors import KfuzzError
    from kfuzz.execute.executor import materialise_case
    from kfuzz.targets import registry as targets

    targets.load_recorded_plugins(row.get("plugins") or [])  # or their `--plugin` stand-ins
    target = targets.get(row["target"])
    inputs, params = materialise_case(target, row["case"])
    if INPUTS_META in inputs:
        raise KfuzzError(f"target {target.name!r} has an input named {INPUTS_META!r}, the "
                         "metadata key of --inputs; rename it")
    arrays: dict[str, Any] = {}
    described: dict[str, Any] = {}
    bits = {1: (torch.uint8, np.uint8), 2: (torch.int16, np.uint16),
            4: (torch.int32, np.uint32), 8: (torch.int64, np.uint64)}
    for name, tensor in inputs.items():
        cpu = tensor.detach().cpu().contiguous()
        try:
            array = cpu.numpy()
        except TypeError:  # no NumPy dtype (bfloat16, float8): its bits
            if cpu.element_size() not in bits:
                raise KfuzzError(f"input {name!r} is {cpu.dtype}, which --inputs cannot "
                                 "store") from None
            as_int, as_uint = bits[cpu.element_size()]
            array = cpu.view(as_int).numpy().view(as_uint)
        arrays[name] = array
        described[name] = {"dtype": str(cpu.dtype).removeprefix("torch."),
                           "stored_as": str(array.dtype), "shape": list(cpu.shape)}
    meta = {"format": INPUTS_FORMAT, "target": row["target"], "kernel": row.get("kernel"),
            "oracle": row.get("oracle"), "fingerprint": row.get("fingerprint"),
            "signature": target.signature, "case": row["case"], "params": params,
            "inputs": described}
    arrays[INPUTS_META] = np.array(json.dumps(meta, sort_keys=True, default=repr))
    return arrays


def write_npz(path: str, arrays: dict[str, Any]) -> None:
    """Write `arrays` as an uncompressed .npz that `numpy.load` reads without pickle, to a
    temporary file beside `path`, then moved over it (no half-written file). Raises OSError."""
    import os
    import tempfile
    import zipfile

    import numpy as np

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".kfuzz-inputs-", suffix=".npz")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key, array in arrays.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as a file opened for writing would be
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

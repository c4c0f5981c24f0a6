"""`kfuzz corpus export ID --standalone`: a reproducer for a library's own bug tracker.

For a finding of a built-in ONNX Runtime or JAX kernel, the script needs only NumPy and that
library (onnx and onnxruntime, or jax; ml_dtypes for BF16): the one-node ONNX model or the
JAX function, the case's input values and the float64 expected values inline (base64 of their
bytes), and the check the run used (allclose with the output dtype's tolerances against the
expected values rounded to that dtype). Exit 1 while it fails, 0 once it passes.

Every value from the corpus reaches the script as a JSON string literal (also a valid Python
string literal), and the kernel's code comes from kfuzz's own tables
(`kfuzz.kernels.onnxruntime.CALLS`, `kfuzz.kernels.jax.SOURCES`), so a crafted corpus cannot
inject code.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kfuzz.errors import KfuzzError

HEAD = '''#!/usr/bin/env python3
# Standalone reproducer (kfuzz finding {short}): {what}
#   target {target_c}, kernel {kernel_c}; needs only NumPy and {needs}.
# Exit status: 1 while the kernel's output fails the check, 0 once it passes.
import base64
import json
import sys

import numpy as np


def dtype(name):
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def array(spec):
    raw = base64.b64decode(spec["data"])
    return np.frombuffer(raw, dtype=dtype(spec["dtype"])).reshape(spec["shape"]).copy()


INPUTS = {{name: array(spec) for name, spec in json.loads({inputs})}}  # in call order
PARAMS = json.loads({params})
EXPECTED = array(json.loads({expected}))  # float64, from the op's formula
CHECK = json.loads({check})  # allclose against EXPECTED rounded to the output dtype
'''

ORT_BODY = '''
import onnx
import onnxruntime
from onnx import helper

NODE = json.loads({node})


def kernel(**inputs):
    types = {{"float32": 1, "float16": 10, "float64": 11, "bfloat16": 16, "int64": 7, "int32": 6}}
    elems = [types[a.dtype.name] for a in inputs.values()]
    graph = helper.make_graph(
        [helper.make_node(NODE["op_type"], [n for n, _ in NODE["inputs"]],
                          ["Y", *NODE["extra_outputs"]], domain=NODE["domain"],
                          **NODE["attributes"])],
        "repro", [helper.make_tensor_value_info(n, elem, dims)
                  for (n, dims), elem in zip(NODE["inputs"], elems)],
        [helper.make_tensor_value_info("Y", elems[0], NODE["output"]),
         *(helper.make_tensor_value_info(n, elems[0], None) for n in NODE["extra_outputs"])])
    imports = [helper.make_opsetid("", NODE["opset"])]
    if NODE["domain"]:
        imports.append(helper.make_opsetid(NODE["domain"], 1))
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    feeds = {{n: a for (n, _), a in zip(NODE["inputs"], inputs.values())}}
    return session.run(None, feeds)[0]


VERSIONS = "onnxruntime " + onnxruntime.__version__ + ", onnx " + onnx.__version__
'''

JAX_BODY = '''
import jax
import jax.numpy as jnp

{source}
JIT = json.loads({jit})
if JIT is not None:
    kernel = jax.jit(kernel, static_argnames=tuple(JIT))
VERSIONS = "jax " + jax.__version__


def run_kernel(**inputs):
    return np.asarray(kernel(**{{k: jnp.asarray(v) for k, v in inputs.items()}}, **PARAMS))
'''

TAIL = '''

def main():
    try:
        if "run_kernel" in globals():
            actual = run_kernel(**INPUTS)
        else:
            actual = kernel(**INPUTS)
    except Exception as exc:  # the library raised on a valid input
        print(f"{{VERSIONS}}: the kernel raised {{type(exc).__name__}}: {{exc}}")
        return 1
    out = dtype(CHECK["dtype"])
    for name, a in INPUTS.items():
        print(f"input {{name}}: {{a.dtype}} {{list(a.shape)}}")
    if actual.dtype != out or list(actual.shape) != list(EXPECTED.shape):
        print(f"FAIL: output is {{actual.dtype}} {{list(actual.shape)}}, expected {{out}} "
              f"{{list(EXPECTED.shape)}}")
        return 1
    got = actual.astype(np.float64)
    want = EXPECTED.astype(out).astype(np.float64) if CHECK["round"] else EXPECTED
    with np.errstate(invalid="ignore", over="ignore"):
        allowed = CHECK["atol"] + CHECK["rtol"] * np.abs(want)
        close = np.abs(got - want) <= allowed
    same_special = (np.isnan(got) & np.isnan(want)) | (np.isinf(got) & (got == want))
    bad = ~(close | same_special)
    count = int(bad.sum())
    print(f"{{VERSIONS}}: {{count}} of {{bad.size}} outputs outside "
          f"|actual - expected| <= {{CHECK['atol']:g}} + {{CHECK['rtol']:g}} * |expected| "
          f"(expected: the float64 formula rounded to {{out}}; {{CHECK['max_ratio']:.2%}} may "
          "fail)")
    for index in np.argwhere(bad)[:5]:
        i = tuple(int(v) for v in index)
        print(f"  at {{list(i)}}: actual {{float(got[i])!r}} expected {{float(want[i])!r}} "
              f"(float64 {{float(EXPECTED[i])!r}})")
    fails = count > CHECK["max_ratio"] * bad.size
    print("FAIL" if fails else "PASS")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
'''


def _literal(value: Any) -> str:
    return json.dumps(json.dumps(value, sort_keys=True))


def _array(value: Any) -> dict[str, Any]:
    import numpy as np
    from kfuzz.targets.arrays import to_numpy

    array = np.array(value if isinstance(value, np.ndarray) else to_numpy(value), order="C")
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "data": base64.b64encode(array.tobytes()).decode("ascii")}


def _kernel_ref(row: dict[str, Any]) -> tuple[str, str]:
    from kfuzz.targets import registry

    target = registry.get(row["target"])
    variant = registry.resolve(target, "kernel", row["kernel"])
    ref = getattr(variant.fn, "ref", "")
    module, _, function = ref.partition(":")
    if module not in ("kfuzz.kernels.onnxruntime", "kfuzz.kernels.jax"):
        raise KfuzzError(f"--standalone writes reproducers for the built-in ONNX Runtime and "
                         f"JAX kernels; kernel {row['kernel']!r} of {row['target']!r} is not "
                         "one (export it without --standalone)")
    return module, function


def _body(module: str, function: str, params: dict[str, Any], inputs: dict[str, Any],
          expected: Any) -> tuple[str, str, str, list[list[Any]], Any]:
    """(what, needs, the script's kernel code, its inputs as [name, array] in call order, the
    expected values) for `module:function` called with `inputs` and `params`. An ONNX
    Runtime reproducer feeds the op's own inputs (what the kernel builds from the case's:
    caches, packed layouts) and expects its output layout."""
    from kfuzz.targets.arrays import to_numpy

    if module == "kfuzz.kernels.onnxruntime":
        from kfuzz.kernels import onnxruntime as ort

        how = ort.CALLS[function]
        node = ort.NODES[how.op]
        arrays = {name: to_numpy(t) for name, t in inputs.items()}
        data = {"op_type": node.op_type, "opset": node.opset, "domain": node.domain,
                "inputs": [[n, list(d)] for n, d in node.inputs], "output": list(node.output),
                "extra_outputs": list(node.extra_outputs),
                "attributes": how.attributes(arrays, **params)}
        feeds = [[n, a] for (n, _), a in zip(node.inputs, how.feeds(arrays, params),
                                             strict=True)]
        domain = f"{node.domain} " if node.domain else ""
        return (f"ONNX Runtime {domain}{node.op_type} (opset {node.opset}) as a one-node model",
                "onnx and onnxruntime", ORT_BODY.format(node=_literal(data)), feeds,
                how.to_op(to_numpy(expected), arrays))
    from kfuzz.kernels import jax as kjax

    source, jit = kjax.JITTED.get(function, (function, None))
    return (f"JAX {source}" + (" under jax.jit" if jit is not None else ", eager"), "jax",
            JAX_BODY.format(source=kjax.SOURCES[source],
                            jit=_literal(None if jit is None else list(jit))),
            [[k, t] for k, t in inputs.items()], expected)


def standalone(row: dict[str, Any]) -> str:
    """The standalone reproducer of a decoded findings row of a built-in ONNX Runtime or JAX
    kernel (see the module docstring). Imports torch and runs the target's oracle. Raises
    KfuzzError for another kernel, a comparator that is not allclose, or a target of more
    than one output."""
    import torch
    from kfuzz.execute.executor import materialise_case
    from kfuzz.judge.comparator import with_overrides
    from kfuzz.store.rows import short_id
    from kfuzz.targets import registry

    module, function = _kernel_ref(row)
    target = registry.get(row["target"])
    if len(target.outputs) != 1:
        raise KfuzzError(f"--standalone: target {target.name!r} has several outputs")
    output = target.outputs[0]
    inputs, params = materialise_case(target, row["case"])
    oracle = registry.resolve(target, "oracle", row.get("oracle") or target.default_oracle)
    with torch.no_grad():
        expected = oracle(**inputs, **params)
    if isinstance(expected, (tuple, list)):
        expected = expected[0]
    elif isinstance(expected, dict):
        expected = expected[output]
    spec = target.expect(dict(row["case"]))[output]
    comparator = with_overrides(target.comparators[output], row.get("comparator"))
    resolved = comparator.resolved(spec.dtype)
    if resolved.mode != "allclose":
        raise KfuzzError(f"--standalone checks allclose only; this finding was judged by "
                         f"{resolved.describe()}")
    check = {"dtype": str(spec.dtype).removeprefix("torch."), "atol": resolved.atol,
             "rtol": resolved.rtol, "max_ratio": resolved.max_ratio,
             "round": resolved.round_expected}
    what, needs, body, feeds, expected = _body(module, function, params, inputs,
                                               expected.double())
    head = HEAD.format(
        short=short_id(row["fingerprint"]), what=what, needs=needs,
        target_c=json.dumps(row["target"]), kernel_c=json.dumps(row["kernel"]),
        inputs=_literal([[k, _array(a)] for k, a in feeds]), params=_literal(params),
        expected=_literal(_array(expected)), check=_literal(check))
    return head + body + TAIL.format()

"""ONNX Runtime's CPU kernels as kfuzz kernels: each op a one-node ONNX model.

One `InferenceSession` per (op, dtype, attributes), cached, built with dynamic dims (every
shape of a case runs on it), one intra-op and one inter-op thread, ORT's logging at severity
3 (errors only). What ORT writes to the process's stderr while building or running a session
is captured: it is added to the message of the exception ORT raises, and dropped otherwise,
so that no log line reaches the terminal.

The kernels take and return NumPy arrays (`variant(..., arrays="numpy")`) with the signatures
of the `ops.*` targets. ONNX Runtime's CPU provider has no BF16 kernel for these ops, so their
variants declare float32 and float16 (`variant(..., dtypes=...)`).

`model(op, dtype, attributes)` builds the one-node model a session runs; `kfuzz corpus export
--standalone` writes the same model into a reproducer that needs only onnx, onnxruntime and
NumPy.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kfuzz.kernels.availability import Unavailable

SEVERITY = 3  # ORT's logging: 0 verbose ... 3 error, 4 fatal


@dataclass(frozen=True)
class Node:
    """One ONNX op as a one-node model: its type, domain, the opset it is imported at, its
    inputs in order with their dims (symbols are dynamic), its output's dims."""

    op_type: str
    opset: int
    inputs: tuple[tuple[str, tuple[str, ...]], ...]
    output: tuple[str, ...] = ("rows", "cols")
    domain: str = ""


ROWS = ("X", ("rows", "cols"))
NODES: dict[str, Node] = {
    "Softmax": Node("Softmax", 13, (ROWS,)),
    "RMSNormalization": Node("RMSNormalization", 23, (ROWS, ("scale", ("cols",)))),
    # Registered by ONNX Runtime in the ONNX domain (not com.microsoft) since version 1.
    "SimplifiedLayerNormalization": Node("SimplifiedLayerNormalization", 17,
                                         (ROWS, ("scale", ("cols",)))),
    "LayerNormalization": Node("LayerNormalization", 17,
                               (ROWS, ("scale", ("cols",)), ("B", ("cols",)))),
}
# ONNX TensorProto element types by dtype name.
ELEM_TYPES = {"float32": 1, "float16": 10, "float64": 11, "bfloat16": 16}


def _onnx() -> Any:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise Unavailable(f"{exc.name} is not installed; pip install 'kfuzz[onnxruntime]'") \
            from None
    onnxruntime.set_default_logger_severity(SEVERITY)
    return onnx


def model(op: str, dtype: str, attributes: Mapping[str, Any]) -> Any:
    """The one-node `onnx.ModelProto` of `op` (a key of NODES) on `dtype` inputs and output,
    with `attributes` on its node."""
    onnx = _onnx()
    from onnx import helper

    node = NODES[op]
    elem = ELEM_TYPES[dtype]
    inputs = [helper.make_tensor_value_info(name, elem, list(dims)) for name, dims in node.inputs]
    output = helper.make_tensor_value_info("Y", elem, list(node.output))
    graph = helper.make_graph(
        [helper.make_node(node.op_type, [n for n, _ in node.inputs], ["Y"], domain=node.domain,
                          **dict(attributes))], f"kfuzz_{op}", inputs, [output])
    imports = [helper.make_opsetid("", node.opset)]
    if node.domain:
        imports.append(helper.make_opsetid(node.domain, 1))
    built = helper.make_model(graph, opset_imports=imports, producer_name="kfuzz")
    built.ir_version = min(built.ir_version, onnx.IR_VERSION)
    return built


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Redirect the process's stderr (file descriptor 2, where ORT logs) to a temporary file
    for the block; the list it yields holds what was written, once the block ends."""
    got: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield got
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            got.append(sink.read().decode(errors="replace"))


def _raise_with(exc: Exception, logged: list[str]) -> None:
    text = "".join(logged).strip()
    if text:
        raise type(exc)(f"{exc}\n[ORT log] {text[-2000:]}") from None
    raise exc


@functools.cache
def session(op: str, dtype: str, attributes: tuple[tuple[str, Any], ...]) -> Any:
    """The cached CPU `InferenceSession` of `model(op, dtype, attributes)`."""
    built = model(op, dtype, dict(attributes))
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = SEVERITY
    logged: list[str] = []
    try:
        with captured_stderr() as logged:
            return onnxruntime.InferenceSession(built.SerializeToString(), options,
                                                providers=["CPUExecutionProvider"])
    except Exception as exc:
        _raise_with(exc, logged)
        raise


def run(op: str, attributes: Mapping[str, Any], *arrays: Any) -> Any:
    """Run `op` on `arrays` (its inputs in order, NumPy arrays of one dtype) and return its
    output. Raises what ONNX Runtime raises, with what it logged."""
    dtype = arrays[0].dtype.name
    if dtype not in ELEM_TYPES:
        raise TypeError(f"ONNX Runtime kernel {op}: no ONNX type for dtype {dtype}")
    sess = session(op, dtype, tuple(sorted(attributes.items())))
    feeds = {name: array for (name, _), array in zip(NODES[op].inputs, arrays, strict=True)}
    logged: list[str] = []
    try:
        with captured_stderr() as logged:
            return sess.run(None, feeds)[0]
    except Exception as exc:
        _raise_with(exc, logged)
        raise


# Kernel function -> (op, its attributes from the target's params): what `kfuzz corpus export
# --standalone` writes into a reproducer.
CALLS: dict[str, tuple[str, Any]] = {
    "softmax": ("Softmax", lambda: {"axis": -1}),
    "rmsnorm": ("RMSNormalization", lambda eps: {"axis": -1, "epsilon": float(eps)}),
    "simplified_layernorm": ("SimplifiedLayerNormalization",
                             lambda eps: {"axis": -1, "epsilon": float(eps)}),
    "layernorm": ("LayerNormalization", lambda eps: {"axis": -1, "epsilon": float(eps)}),
}


def softmax(x: Any) -> Any:
    """ONNX Softmax (opset 13) over the last axis."""
    return run("Softmax", {"axis": -1}, x)


def rmsnorm(x: Any, weight: Any, *, eps: float) -> Any:
    """ONNX RMSNormalization (opset 23) over the last axis, stash_type float32."""
    return run("RMSNormalization", {"axis": -1, "epsilon": float(eps)}, x, weight)


def simplified_layernorm(x: Any, weight: Any, *, eps: float) -> Any:
    """ONNX Runtime's SimplifiedLayerNormalization (RMSNorm) over the last axis."""
    return run("SimplifiedLayerNormalization", {"axis": -1, "epsilon": float(eps)}, x, weight)


def layernorm(x: Any, weight: Any, bias: Any, *, eps: float) -> Any:
    """ONNX LayerNormalization (opset 17) over the last axis, stash_type float32."""
    return run("LayerNormalization", {"axis": -1, "epsilon": float(eps)}, x, weight, bias)

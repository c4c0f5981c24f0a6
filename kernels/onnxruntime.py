"""ONNX Runtime's CPU kernels as kfuzz kernels: each op a one-node ONNX model.

One `InferenceSession` per (op, dtype, attributes), cached, built with dynamic dims (every
shape of a case runs on it), one intra-op and one inter-op thread, ORT's logging at severity
3 (errors only). What ORT writes to the process's stderr while building a session is captured:
it is added to the message of the exception ORT raises, and dropped otherwise. A session runs
with its run log at severity 4 (fatal only): the error ORT would log for a failing run is the
message of the exception it raises, so no log line reaches the terminal and a run costs no
redirection of stderr.

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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kfuzz.kernels.availability import Unavailable
from kfuzz.targets.arrays import dtype_name

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
    types: tuple[tuple[str, str], ...] = ()  # inputs of a fixed dtype, by name
    # Optional outputs the node also produces after "Y" (of the inputs' dtype), unread.
    extra_outputs: tuple[str, ...] = ()

    def dtype_of(self, name: str, dtype: str) -> str:
        """The dtype of input `name` in a model on `dtype` data."""
        return dict(self.types).get(name, dtype)


ROWS = ("X", ("rows", "cols"))
ROPE_X = ("X", ("batch", "heads", "seq", "dim"))
ROPE_CACHES = (("cos_cache", ("positions", "half")), ("sin_cache", ("positions", "half")))
ROPE_IDS = ("position_ids", ("batch", "seq"))
GQA_INPUTS = (("query", ("B", "Lq", "HQD")), ("key", ("B", "Lq", "HKD")),
              ("value", ("B", "Lq", "HKD")), ("past_key", ("B", "Hkv", "P", "D")),
              ("past_value", ("B", "Hkv", "P", "D")), ("seqlens_k", ("B",)),
              ("total_sequence_length", ()))
GQA_TYPES = (("seqlens_k", "int32"), ("total_sequence_length", "int32"))
NODES: dict[str, Node] = {
    "Softmax": Node("Softmax", 13, (ROWS,)),
    "RMSNormalization": Node("RMSNormalization", 23, (ROWS, ("scale", ("cols",)))),
    # Registered by ONNX Runtime in the ONNX domain (not com.microsoft) since version 1.
    "SimplifiedLayerNormalization": Node("SimplifiedLayerNormalization", 17,
                                         (ROWS, ("scale", ("cols",)))),
    "LayerNormalization": Node("LayerNormalization", 17,
                               (ROWS, ("scale", ("cols",)), ("B", ("cols",)))),
    # X as [batch, heads, seq, dim]; the caches [rows, dim / 2] gathered by position_ids.
    "RotaryEmbedding": Node("RotaryEmbedding", 23, (ROPE_X, *ROPE_CACHES, ROPE_IDS),
                            ROPE_X[1], types=(("position_ids", "int64"),)),
    # com.microsoft's: the same data, position_ids before the caches.
    "RotaryEmbeddingMS": Node("RotaryEmbedding", 23, (ROPE_X, ROPE_IDS, *ROPE_CACHES),
                              ROPE_X[1], domain="com.microsoft",
                              types=(("position_ids", "int64"),)),
    "Attention": Node("Attention", 23, (("Q", ("B", "H", "Lq", "D")), ("K", ("B", "H", "Lk", "D")),
                                        ("V", ("B", "H", "Lk", "D"))), ("B", "H", "Lq", "D")),
    # com.microsoft's, on [batch, seq, heads * dim] tensors.
    "MultiHeadAttention": Node("MultiHeadAttention", 23,
                               (("query", ("B", "Lq", "HD")), ("key", ("B", "Lk", "HD")),
                                ("value", ("B", "Lk", "HD"))), ("B", "Lq", "HD"),
                               domain="com.microsoft"),
    # com.microsoft's, on [batch, seq, heads * dim] tensors: the new keys and values packed,
    # the past ones [B, Hkv, P, D], seqlens_k (total length - 1 per batch entry) and
    # total_sequence_length. With the optional present_key / present_value outputs (as models
    # use it) and without them.
    "GroupQueryAttention": Node("GroupQueryAttention", 23, GQA_INPUTS, ("B", "Lq", "HQD"),
                                domain="com.microsoft", types=GQA_TYPES,
                                extra_outputs=("present_key", "present_value")),
    "GroupQueryAttentionNoPresent": Node("GroupQueryAttention", 23, GQA_INPUTS,
                                         ("B", "Lq", "HQD"), domain="com.microsoft",
                                         types=GQA_TYPES),
}
# ONNX TensorProto element types by dtype name.
ELEM_TYPES = {"float32": 1, "float16": 10, "float64": 11, "bfloat16": 16, "int64": 7, "int32": 6}


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
    inputs = [helper.make_tensor_value_info(name, ELEM_TYPES[node.dtype_of(name, dtype)],
                                            list(dims)) for name, dims in node.inputs]
    outputs = [helper.make_tensor_value_info("Y", elem, list(node.output)),
               *(helper.make_tensor_value_info(name, elem, None) for name in node.extra_outputs)]
    graph = helper.make_graph(
        [helper.make_node(node.op_type, [n for n, _ in node.inputs], ["Y", *node.extra_outputs],
                          domain=node.domain, **dict(attributes))], f"kfuzz_{op}", inputs,
        outputs)
    imports = [helper.make_opsetid("", node.opset)]
    if node.domain:
        imports.append(helper.make_opsetid(node.domain, 1))
    built = helper.make_model(graph, opset_imports=imports, producer_name="kfuzz")
    built.ir_version = min(built.ir_version, onnx.IR_VERSION)
    return built


# The file that captures ORT's stderr, by process: one per process, emptied after each use,
# so that a call costs a few system calls, not a new temporary file. (A forked process makes
# its own: a file shared with its parent would mix the two processes' logs.)
_SINKS: dict[int, Any] = {}


def _sink() -> int:
    pid = os.getpid()
    if pid not in _SINKS:
        _SINKS.clear()
        _SINKS[pid] = tempfile.TemporaryFile(mode="w+b")
    return int(_SINKS[pid].fileno())


def _drained(fd: int) -> str:
    """What was written to `fd` since it was last drained; the file emptied."""
    size = os.lseek(fd, 0, os.SEEK_CUR)
    if not size:
        return ""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    return b"".join(chunks).decode(errors="replace")


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Redirect the process's stderr (file descriptor 2, where ORT logs) to this process's
    capture file for the block; the list it yields holds what was written, once the block
    ends."""
    got: list[str] = []
    sink = _sink()
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(sink, 2)
    try:
        yield got
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        got.append(_drained(sink))


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


@functools.cache
def run_options() -> Any:
    """The options every session runs with: its run log at severity 4 (fatal only), since the
    error a failing run would log is the message of the exception it raises."""
    import onnxruntime

    options = onnxruntime.RunOptions()
    options.log_severity_level = 4
    return options


def run(op: str, attributes: Mapping[str, Any], *arrays: Any) -> Any:
    """Run `op` on `arrays` (its inputs in order, NumPy arrays of one dtype) and return its
    output. Raises what ONNX Runtime raises."""
    dtype = dtype_name(arrays[0].dtype)
    if dtype not in ELEM_TYPES:
        raise TypeError(f"ONNX Runtime kernel {op}: no ONNX type for dtype {dtype}")
    sess = session(op, dtype, tuple(sorted(attributes.items())))
    feeds = {name: array for (name, _), array in zip(NODES[op].inputs, arrays, strict=True)}
    return sess.run(None, feeds, run_options())[0]


def _same(value: Any, inputs: Mapping[str, Any]) -> Any:
    return value


def _in_order(inputs: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(inputs.values())


@dataclass(frozen=True)
class Call:
    """How a kernel function runs its op: the op (a key of NODES), its attributes from the
    kernel's inputs and params, the op's inputs from the kernel's (`feeds`), and the output
    moved between the kernel's layout and the op's (`to_op`, `from_op`, inverses)."""

    op: str
    attributes: Callable[..., dict[str, Any]]
    feeds: Callable[[Mapping[str, Any], Mapping[str, Any]], tuple[Any, ...]] = _in_order
    to_op: Callable[[Any, Mapping[str, Any]], Any] = _same
    from_op: Callable[[Any, Mapping[str, Any]], Any] = _same


def _eps(inputs: Mapping[str, Any], *, eps: float) -> dict[str, Any]:
    return {"axis": -1, "epsilon": float(eps)}


def _rope_feeds(inputs: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[Any, ...]:
    """x [tokens, heads, dim] as X [1, heads, tokens, dim]; the cos/sin caches built in
    float64 from `base` (angle = position * base ** (-2i / dim)) and rounded to x's dtype, row
    t for token t, which position_ids [[0, 1, ..., tokens - 1]] gather. (ONNX Runtime's CPU
    kernel refuses caches of fewer rows than tokens, so one row per distinct position will
    not do.)"""
    import numpy as np

    x, rows = inputs["x"], inputs["positions"]
    dim = x.shape[-1]
    ids = np.arange(len(rows), dtype=np.int64)
    inv_freq = float(params["base"]) ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    angles = rows.astype(np.float64)[:, None] * inv_freq[None, :]
    return (np.ascontiguousarray(x.transpose(1, 0, 2)[None]), np.cos(angles).astype(x.dtype),
            np.sin(angles).astype(x.dtype), ids.reshape(1, -1).astype(np.int64))


def _rope_to_op(value: Any, inputs: Mapping[str, Any]) -> Any:
    return value.transpose(1, 0, 2)[None]


def _rope_from_op(value: Any, inputs: Mapping[str, Any]) -> Any:
    return value[0].transpose(1, 0, 2)


def _ms_rope_feeds(inputs: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[Any, ...]:
    x, cos, sin, ids = _rope_feeds(inputs, params)
    return x, ids, cos, sin


def _packed(value: Any) -> Any:
    """[B, H, L, D] as [B, L, H * D]."""
    b, h, length, d = value.shape
    return value.transpose(0, 2, 1, 3).reshape(b, length, h * d)


def _mha_feeds(inputs: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(_packed(inputs[name]) for name in ("q", "k", "v"))


def _mha_from_op(value: Any, inputs: Mapping[str, Any]) -> Any:
    b, h, length, d = inputs["q"].shape
    return value.reshape(b, length, h, d).transpose(0, 2, 1, 3)


def _gqa_feeds(inputs: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[Any, ...]:
    """q [B, Hq, Lq, D], k and v [B, Hkv, Lk, D] as GroupQueryAttention's inputs: the query
    and the last Lq keys and values (the new ones) packed, the first Lk - Lq as the past
    [B, Hkv, P, D], seqlens_k = Lk - 1 for every batch entry, total_sequence_length = Lk."""
    import numpy as np

    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    past, k_len = k.shape[2] - q.shape[2], k.shape[2]
    return (_packed(q), _packed(k[:, :, past:]), _packed(v[:, :, past:]),
            np.ascontiguousarray(k[:, :, :past]), np.ascontiguousarray(v[:, :, :past]),
            np.full(q.shape[0], k_len - 1, dtype=np.int32), np.array(k_len, dtype=np.int32))


def _gqa_attributes(inputs: Mapping[str, Any], *, causal: bool, scale: float) -> dict[str, Any]:
    return {"num_heads": int(inputs["q"].shape[1]), "kv_num_heads": int(inputs["k"].shape[1]),
            "scale": float(scale), "causal": int(causal)}


# Kernel function -> how it calls its op: what the kernels run and what `kfuzz corpus export
# --standalone` writes into a reproducer.
CALLS: dict[str, Call] = {
    "softmax": Call("Softmax", lambda inputs: {"axis": -1}),
    "rmsnorm": Call("RMSNormalization", _eps),
    "simplified_layernorm": Call("SimplifiedLayerNormalization", _eps),
    "layernorm": Call("LayerNormalization", _eps),
    "rope": Call("RotaryEmbedding", lambda inputs, *, base: {"interleaved": 1},
                 _rope_feeds, _rope_to_op, _rope_from_op),
    "rope_ms": Call("RotaryEmbeddingMS", lambda inputs, *, base: {"interleaved": 1},
                    _ms_rope_feeds, _rope_to_op, _rope_from_op),
    "attention": Call("Attention", lambda inputs, *, causal, scale: {
        "is_causal": int(causal), "scale": float(scale)}),
    "multihead_attention": Call("MultiHeadAttention", lambda inputs, *, causal, scale: {
        "num_heads": int(inputs["q"].shape[1]), "scale": float(scale),
        "unidirectional": int(causal)}, _mha_feeds, lambda value, inputs: _packed(value),
        _mha_from_op),
    "group_query_attention": Call("GroupQueryAttention", _gqa_attributes, _gqa_feeds,
                                  lambda value, inputs: _packed(value), _mha_from_op),
    "group_query_attention_no_present": Call("GroupQueryAttentionNoPresent", _gqa_attributes,
                                             _gqa_feeds, lambda value, inputs: _packed(value),
                                             _mha_from_op),
}


def call(function: str, inputs: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    """Run kernel function `function` (a key of CALLS) on `inputs` (NumPy arrays by name, in
    the target's order) and `params`; the output in the kernel's layout."""
    how = CALLS[function]
    out = run(how.op, how.attributes(inputs, **params), *how.feeds(inputs, params))
    return how.from_op(out, inputs)


def softmax(x: Any) -> Any:
    """ONNX Softmax (opset 13) over the last axis."""
    return call("softmax", {"x": x}, {})


def rmsnorm(x: Any, weight: Any, *, eps: float) -> Any:
    """ONNX RMSNormalization (opset 23) over the last axis, stash_type float32."""
    return call("rmsnorm", {"x": x, "weight": weight}, {"eps": eps})


def simplified_layernorm(x: Any, weight: Any, *, eps: float) -> Any:
    """ONNX Runtime's SimplifiedLayerNormalization (RMSNorm) over the last axis."""
    return call("simplified_layernorm", {"x": x, "weight": weight}, {"eps": eps})


def layernorm(x: Any, weight: Any, bias: Any, *, eps: float) -> Any:
    """ONNX LayerNormalization (opset 17) over the last axis, stash_type float32."""
    return call("layernorm", {"x": x, "weight": weight, "bias": bias}, {"eps": eps})


def rope(x: Any, positions: Any, *, base: float) -> Any:
    """ONNX RotaryEmbedding (opset 23), interleaved pairs, caches from `base` in float64."""
    return call("rope", {"x": x, "positions": positions}, {"base": base})


def rope_ms(x: Any, positions: Any, *, base: float) -> Any:
    """ONNX Runtime's com.microsoft RotaryEmbedding, interleaved, the same caches."""
    return call("rope_ms", {"x": x, "positions": positions}, {"base": base})


def attention(q: Any, k: Any, v: Any, *, causal: bool, scale: float) -> Any:
    """ONNX Attention (opset 23) on [B, H, L, D] tensors, is_causal from `causal`."""
    return call("attention", {"q": q, "k": k, "v": v}, {"causal": causal, "scale": scale})


def multihead_attention(q: Any, k: Any, v: Any, *, causal: bool, scale: float) -> Any:
    """ONNX Runtime's com.microsoft MultiHeadAttention on [B, L, H * D] tensors (reshaped at
    the boundary), unidirectional from `causal`."""
    return call("multihead_attention", {"q": q, "k": k, "v": v},
                {"causal": causal, "scale": scale})


def _by_batch_entry(function: str, q: Any, k: Any, v: Any, *, causal: bool, scale: float) -> Any:
    """Run `function` (a GroupQueryAttention key of CALLS) on one call, or, where ONNX Runtime
    asks for one batch entry at a time ("batch_size must be 1 when sequence_length > 1 and past
    context is given": several queries and a past), on each batch entry, the outputs stacked."""
    import numpy as np

    params = {"causal": causal, "scale": scale}
    if q.shape[0] == 1 or q.shape[2] == 1 or q.shape[2] == k.shape[2]:
        return call(function, {"q": q, "k": k, "v": v}, params)
    return np.concatenate([call(function, {"q": q[b:b + 1], "k": k[b:b + 1], "v": v[b:b + 1]},
                                params) for b in range(q.shape[0])])


def group_query_attention(q: Any, k: Any, v: Any, *, causal: bool, scale: float) -> Any:
    """ONNX Runtime's com.microsoft GroupQueryAttention with its present_key and present_value
    outputs: q [B, Hq, Lq, D], k and v [B, Hkv, Lk, D], the last Lq keys and values fed as the
    new ones and the rest as the past (`_gqa_feeds`); causal bottom-right aligned, as the op's.
    Batch entries run one at a time where the op takes only one (`_by_batch_entry`)."""
    return _by_batch_entry("group_query_attention", q, k, v, causal=causal, scale=scale)


def group_query_attention_no_present(q: Any, k: Any, v: Any, *, causal: bool,
                                     scale: float) -> Any:
    """`group_query_attention` on a node without the optional present_key and present_value
    outputs."""
    return _by_batch_entry("group_query_attention_no_present", q, k, v, causal=causal,
                           scale=scale)

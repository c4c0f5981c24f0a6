#!/usr/bin/env python3
"""ONNX Runtime com.microsoft GroupQueryAttention: without its optional present_key and
present_value outputs, a call with a past (past_key / past_value) returns wrong values.

Needs only NumPy, onnx and onnxruntime. Builds two one-node models of the op that differ only
in their outputs (FP32, one head, head size 8): one with present_key and present_value, one
without them (the schema marks both optional). Feeds both the same past of P keys and values
and one new token, seqlens_k = P, total_sequence_length = P + 1, and compares each with
float64 attention of the query over all P + 1 keys. Exit 1 while the node without present
outputs is off (the defect), 0 once it matches.

    python ort_gqa_no_present.py [P]    (default 2; P = 0, no past, is right)
"""

import sys

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper

P = int(sys.argv[1]) if len(sys.argv) == 2 else 2
D = 8
NEW = ("query", "key", "value")
PAST = ("past_key", "past_value")


def session(present):
    outputs = ["Y", "present_key", "present_value"] if present else ["Y"]
    node = helper.make_node("GroupQueryAttention", [*NEW, *PAST, "seqlens_k",
                                                    "total_sequence_length"], outputs,
                            domain="com.microsoft", num_heads=1, kv_num_heads=1)
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, D]) for n in NEW]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, P, D]) for n in PAST]
    inputs += [helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
               helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, [])]
    graph = helper.make_graph([node], "gqa", inputs,
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                               for n in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def main():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 1, D)).astype(np.float32)
    k, v = (rng.standard_normal((1, 1, P + 1, D)).astype(np.float32) for _ in range(2))
    feeds = {"query": q, "key": k[0, :, P:], "value": v[0, :, P:],
             "past_key": np.ascontiguousarray(k[:, :, :P]),
             "past_value": np.ascontiguousarray(v[:, :, :P]),
             "seqlens_k": np.array([P], np.int32),
             "total_sequence_length": np.array(P + 1, np.int32)}
    # softmax(q k^T / sqrt(D)) v over the past and the new key, in float64.
    scores = k[0, 0].astype(np.float64) @ q[0, 0].astype(np.float64) / np.sqrt(D)
    weights = np.exp(scores - scores.max())
    expected = (weights / weights.sum()) @ v[0, 0].astype(np.float64)
    print(f"onnxruntime {onnxruntime.__version__}, GroupQueryAttention, past of {P}, "
          f"one new token, head size {D}, FP32")
    off = {}
    for present in (True, False):
        got = session(present).run(None, feeds)[0][0, 0].astype(np.float64)
        off[present] = float(np.abs(got - expected).max())
        print(f"  {'with' if present else 'without'} present outputs: max |error| "
              f"{off[present]:.3g}, output[:3] {got[:3].tolist()}")
    print(f"  float64 expected[:3] {expected[:3].tolist()}")
    if not off[False] <= 1e-4:  # NaN included
        print("FAIL: without present_key/present_value the output is wrong once a past is given")
        return 1
    print("OK: both nodes match float64")
    return 0


if __name__ == "__main__":
    sys.exit(main())

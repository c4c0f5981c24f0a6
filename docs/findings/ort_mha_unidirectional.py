#!/usr/bin/env python3
"""ONNX Runtime com.microsoft MultiHeadAttention: `unidirectional=1` with fewer queries than
keys (Lq < Lk, no past state) masks no single causal alignment.

Needs only NumPy, onnx and onnxruntime. Builds the one-node model (one head, FP32, query
[1, Lq, D], key and value [1, Lk, D]), runs it, and compares every query row with float64
attention masked by `j <= i + o` (row i attends keys 0 .. i + o) for each offset o: o = 0 is
top-left alignment, o = Lk - Lq bottom-right, o >= Lk - 1 no mask. A causal mask is one offset
for every row. Exit 1 while no offset matches every row (the defect), 0 once one does.

    python ort_mha_unidirectional.py [LQ LK]    (default 2 3, the smallest case)
"""

import sys

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper

# The smallest case (Lq = 1 looks bottom-right aligned; Lq = Lk is correct), or LQ LK given.
LQ, LK = (int(n) for n in sys.argv[1:3]) if len(sys.argv) == 3 else (2, 3)
D = 1
SCALE = 1.0


def session():
    dims = {"query": [1, LQ, D], "key": [1, LK, D], "value": [1, LK, D]}
    node = helper.make_node("MultiHeadAttention", list(dims), ["Y"], domain="com.microsoft",
                            num_heads=1, scale=SCALE, unidirectional=1)
    graph = helper.make_graph(
        [node], "mha", [helper.make_tensor_value_info(n, TensorProto.FLOAT, d)
                        for n, d in dims.items()],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, LQ, D])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])


def expected(q, k, v, offset):
    """softmax(scale * q k^T, masked where j > i + offset) v, in float64."""
    q, k, v = (a[0].astype(np.float64) for a in (q, k, v))
    scores = SCALE * q @ k.T
    rows, cols = np.indices(scores.shape)
    scores = np.where(cols <= rows + offset, scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (weights / weights.sum(axis=1, keepdims=True)) @ v


def main():
    # Distinct keys and values, so that each row's output tells which keys it attended.
    q = np.ones((1, LQ, D), np.float32)
    k = np.arange(1, LK + 1, dtype=np.float32).reshape(1, LK, D) / 2
    v = np.arange(LK, dtype=np.float32).reshape(1, LK, D) ** 2
    got = session().run(None, {"query": q, "key": k, "value": v})[0][0].astype(np.float64)
    offsets = range(LK)
    matches = [[o for o in offsets
                if np.allclose(got[i], expected(q, k, v, o)[i], rtol=1e-5, atol=1e-6)]
               for i in range(LQ)]
    print(f"onnxruntime {onnxruntime.__version__}, MultiHeadAttention unidirectional=1, "
          f"Lq={LQ} Lk={LK} D={D}, FP32")
    for i, row in enumerate(matches):
        keys = [f"0..{i + o}" if i + o < LK - 1 else "every key" for o in row]
        print(f"  row {i}: output {got[i].tolist()}, matches offsets {row} "
              f"(keys {', '.join(sorted(set(keys))) or 'none'})")
    common = set(offsets).intersection(*map(set, matches))
    if common:
        print(f"OK: every row matches causal offset {min(common)}")
        return 0
    print("FAIL: no single causal alignment masks every row "
          "(top-left is offset 0, bottom-right offset Lk - Lq)")
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""Kernels that the committed test corpus (tests/data/corpus.db) names by reference.

`rmsnorm` stands for a kernel after its fix: it upcasts to FP32 and rounds once. When the
corpus was made (tests/data/make_corpus.py) the same reference computed every op in BF16, as
`kfuzz.kernels.ops.rmsnorm_lowp` does, and failed; replaying that finding now passes, so the corpus
holds one fixed finding beside an open one.
"""

from kfuzz.kernels.ops import rmsnorm_fp32 as rmsnorm

__all__ = ["rmsnorm"]

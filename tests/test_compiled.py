"""torch.compile variants: shape classes, one compilation per class, and the all-BF16
RMSNorm finding (compiled vs eager, kernel vs kernel)."""

from __future__ import annotations

import pytest
import torch
from kfuzz.kernels import ops
from kfuzz.kernels.compiled import Compiled, compiled, fresh_function, shape_class
from kfuzz.targets import registry as targets


def _x(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape))).to(dtype)


@pytest.mark.parametrize("a, b, same", [
    ((_x(4, 64),), (_x(8, 128),), True),
    ((_x(4, 64),), (_x(4, 64, dtype=torch.float16),), False),
    ((_x(4, 64),), (_x(1, 64),), False),
    ((_x(4, 64),), (_x(4, 1),), False),
    ((_x(4, 64),), (_x(4, 64, 2),), False),
    ((_x(4, 64), _x(64)), (_x(5, 65), _x(65)), True),
], ids=["sizes", "dtype", "size-1 rows", "size-1 cols", "rank", "two tensors"])
def test_shape_class_separates_what_a_dynamic_graph_cannot_abstract(a, b, same):
    assert (shape_class(a, {"eps": 1e-6}) == shape_class(b, {"eps": 1e-5})) is same


def test_fresh_function_has_its_own_code_object_and_computes_the_same():
    copy = fresh_function(ops.rmsnorm_fp32)
    assert copy.__code__ is not ops.rmsnorm_fp32.__code__
    x, w = _x(3, 16), _x(16)
    assert torch.equal(copy(x, w, eps=1e-6), ops.rmsnorm_fp32(x, w, eps=1e-6))


def test_compiled_is_lazy():
    c = compiled(ops.softmax_fp32)
    assert isinstance(c, Compiled)
    assert c.compilations == 0
    assert c.__name__ == "softmax_fp32"


def test_ops_targets_carry_compiled_variants():
    for name in ("ops.rmsnorm", "ops.softmax", "ops.rope"):
        kernels = targets.get(name).kernels
        assert isinstance(kernels["compiled_lowp"].fn, Compiled)
        assert isinstance(kernels["compiled_fp32"].fn, Compiled)


@pytest.mark.slow
def test_one_compilation_per_shape_class_and_fp32_matches_eager():
    c = compiled(ops.rmsnorm_fp32)
    for rows, hidden in ((4, 64), (8, 128), (3, 1000)):
        x, w = _x(rows, hidden), _x(hidden)
        assert torch.allclose(c(x, w, eps=1e-6).float(), ops.rmsnorm_fp32(x, w, eps=1e-6).float(),
                              rtol=2**-7, atol=0)
    assert c.compilations == 1
    c(_x(1, 64), _x(64), eps=1e-6)
    c(_x(4, 64, dtype=torch.float16), _x(64, dtype=torch.float16), eps=1e-6)
    assert c.compilations == 3


def test_compiled_all_bf16_rmsnorm_differs_from_eager_as_a_kernel_vs_kernel_finding(kfuzz, db_path):
    # One shape class (BF16, rows and hidden > 1), so one compilation.
    run = kfuzz("run", "ops.rmsnorm", "--kernel", "compiled_lowp", "--oracle", "eager_lowp",
                "--compare", "exact", "--max-examples", "10", "--seed", "3",
                "--pin", "dtype=bfloat16", "--pin", "shape=[8,512]", "--db", db_path, "--json")
    assert run.code == 1, run.err
    finding = run.json()["findings"][0]
    assert (finding["kernel"], finding["oracle"]) == ("compiled_lowp", "eager_lowp")
    # Inductor keeps FP32 intermediates where eager rounds each op to BF16.
    assert finding["metrics"]["y"]["mismatch_ratio"] > 0.1


@pytest.mark.slow
def test_a_shape_class_at_the_recompile_limit_raises_instead_of_running_eagerly():
    import torch._dynamo

    c = compiled(ops.rmsnorm_lowp)
    with torch._dynamo.config.patch(recompile_limit=2):
        c(_x(4, 100), _x(100), eps=1e-6)
        # Inductor on the CPU guards reductions on rows of at most 4096 elements: a longer row
        # recompiles within the same shape class, which then holds 2 graphs, the limit.
        with pytest.raises(RuntimeError, match="reached its recompile limit"):
            c(_x(4, 5000), _x(5000), eps=1e-6)

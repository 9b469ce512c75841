import zlib

import numpy as np
import pytest

from schedules.epilogue import Epilogue
from schedules.sparse_cpu.bsr_conv2d import bsr_conv2d
from tvm_sparse.formats import BSRWeight
from tvm_sparse.formats.synthetic import block_sparse

# (batch, channels, filters, height, width, stride, padding, block, density, epilogue)
CASES = [
    (1, 32, 16, 8, 8, 1, 0, (8, 4), 0.1, Epilogue(bias=True, activation="relu6")),
    (2, 12, 20, 7, 5, 1, 0, (8, 4), 0.3, Epilogue(bias=True, residual=True)),
    (1, 16, 24, 9, 9, 2, 0, (8, 4), 0.2, Epilogue(activation="relu")),
    (1, 10, 6, 4, 6, 1, 1, (4, 2), 0.5, Epilogue(bias=True)),
    (3, 9, 7, 1, 1, 1, 0, (2, 3), 0.5, Epilogue(bias=True, activation="relu")),
    # padded input and padded output of the same size (once given the same memory)
    (1, 5, 5, 1, 2, 1, 0, (4, 2), 0.99, Epilogue()),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c[0]}c{c[1]}k{c[2]}_{c[3]}x{c[4]}_s{c[5]}p{c[6]}")
@pytest.mark.parametrize("codegen", ["default", "compact"])
def test_matches_torch(case, codegen, kernel_matches_torch):
    batch, channels, filters, height, width, stride, padding, block, density, epilogue = case
    rng = np.random.default_rng(zlib.crc32(str(case).encode()))
    weight = block_sparse(rng, (filters, channels, 1, 1), block, density)
    x = rng.standard_normal((batch, channels, height, width)).astype("float32")
    kernel_matches_torch(bsr_conv2d, BSRWeight.from_dense(weight, block), weight, x, rng, stride, padding, epilogue,
                         codegen)


def test_linear_weight_as_one_by_one(run_kernel):
    """A [K, C] (linear) weight runs on a [N, C, 1, 1] input like x @ W.T + b."""
    rng = np.random.default_rng(0)
    weight = block_sparse(rng, (24, 40), (8, 4), 0.25)
    fmt = BSRWeight.from_dense(weight, (8, 4))
    x = rng.standard_normal((2, 40)).astype("float32")
    bias = rng.standard_normal(24).astype("float32")
    func = bsr_conv2d(fmt, (2, 40, 1, 1), epilogue=Epilogue(bias=True))
    out = run_kernel(func, [x.reshape(2, 40, 1, 1), bias], (2, 24, 1, 1))
    np.testing.assert_allclose(out.reshape(2, 24), x @ weight.T + bias, rtol=1e-4, atol=1e-4)


def test_rejects_other_formats():
    with pytest.raises(TypeError, match="BSRWeight"):
        bsr_conv2d(np.zeros((4, 4)), (1, 4, 8, 8))

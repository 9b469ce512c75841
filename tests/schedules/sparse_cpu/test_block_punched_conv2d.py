import zlib

import numpy as np
import pytest

from schedules.epilogue import Epilogue
from schedules.sparse_cpu.block_punched_conv2d import block_punched_conv2d
from tvm_sparse.formats import BlockPunchedWeight
from tvm_sparse.formats.synthetic import block_punched

# (batch, channels, filters, kernel, height, width, stride, padding, block, density, epilogue)
CASES = [
    (1, 8, 16, 3, 8, 8, 1, 1, (8, 4), 0.25, Epilogue(bias=True, activation="relu")),
    (2, 7, 10, 3, 9, 11, 2, 1, (8, 4), 0.4, Epilogue(bias=True, residual=True, activation="relu6")),
    (1, 6, 5, 1, 7, 5, 1, 0, (4, 2), 0.5, Epilogue(residual=True)),
    (1, 5, 9, 5, 10, 9, 1, 2, (8, 4), 0.3, Epilogue(bias=True)),
    (1, 3, 8, 7, 12, 12, 2, 3, (8, 4), 0.3, Epilogue(activation="relu")),
    (1, 9, 6, 3, 6, 13, 1, (0, 1, 2, 0), (3, 5), 0.6, Epilogue()),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"c{c[1]}k{c[2]}r{c[3]}_{c[4]}x{c[5]}_s{c[6]}b{c[8][0]}x{c[8][1]}")
@pytest.mark.parametrize("codegen", ["default", "compact"])
def test_matches_torch(case, codegen, kernel_matches_torch):
    batch, channels, filters, kernel, height, width, stride, padding, block, density, epilogue = case
    rng = np.random.default_rng(zlib.crc32(str(case).encode()))
    weight = block_punched(rng, (filters, channels, kernel, kernel), block, density)
    x = rng.standard_normal((batch, channels, height, width)).astype("float32")
    kernel_matches_torch(block_punched_conv2d, BlockPunchedWeight.from_dense(weight, block), weight, x, rng, stride,
                         padding, epilogue, codegen)


def test_rejects_other_formats():
    with pytest.raises(TypeError, match="BlockPunchedWeight"):
        block_punched_conv2d(np.zeros((4, 4, 3, 3)), (1, 4, 8, 8))

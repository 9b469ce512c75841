"""The OpenCL block-punched / BSR kernel, run on PoCL against PyTorch and the formats' reference."""

import zlib

import numpy as np
import pytest

from schedules.epilogue import Epilogue
from schedules.kernel_table import table_argument
from schedules.opencl.block_rows_conv2d import BlockRowsTile, block_rows, block_rows_conv2d_opencl
from tests.schedules import pocl
from tvm_sparse.formats import BlockPunchedWeight, BSRWeight
from tvm_sparse.formats.synthetic import block_punched, block_sparse

RELU = Epilogue(bias=True, activation="relu")

# (format, batch, channels, filters, height, width, kernel, stride, padding, block, density, epilogue, tile, device)
CASES = [
    ("block_punched", 1, 16, 16, 8, 8, 3, 1, 1, (8, 4), 0.25, RELU, None, "mali"),
    ("block_punched", 2, 12, 20, 11, 9, 3, 2, 1, (8, 4), 0.3, Epilogue(True, True, "relu"), BlockRowsTile(16, 2, 8), "adreno"),
    ("block_punched", 1, 10, 7, 9, 13, 5, 1, 2, (4, 4), 0.4, Epilogue(residual=True, activation="relu6"), BlockRowsTile(32, 1, 5), "mali"),
    ("block_punched", 1, 24, 32, 12, 12, 1, 1, 0, (16, 4), 0.2, RELU, None, "adreno"),
    ("block_punched", 1, 3, 16, 16, 16, 7, 2, 3, (8, 3), 0.5, Epilogue(), BlockRowsTile(8, 4, 64), "mali"),
    ("bsr", 1, 32, 24, 7, 7, 1, 1, 0, (8, 4), 0.2, RELU, None, "mali"),
    ("bsr", 3, 30, 13, 5, 6, 1, 1, 0, (4, 4), 0.3, Epilogue(True, True, "relu6"), BlockRowsTile(4, 3, 4), "adreno"),
    ("bsr", 1, 16, 16, 9, 9, 1, 2, 0, (8, 8), 0.0, Epilogue(bias=True), None, "mali"),  # every block pruned
]


def _weight(rng, fmt, filters, channels, kernel, block, density):
    if fmt == "block_punched":
        dense = block_punched(rng, (filters, channels, kernel, kernel), block, density)
        return dense, BlockPunchedWeight.from_dense(dense, block)
    dense = block_sparse(rng, (filters, channels), block, density)
    return dense[:, :, None, None], BSRWeight.from_dense(dense, block)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[-1]}_{c[0]}_n{c[1]}c{c[2]}k{c[3]}_{c[4]}x{c[5]}_r{c[6]}s{c[7]}")
def test_matches_torch_on_pocl(case, opencl_context, epilogue_case):
    fmt, batch, channels, filters, height, width, kernel, stride, padding, block, density, epilogue, tile, device = case
    rng = np.random.default_rng(zlib.crc32(str(case[:11]).encode()))
    dense, weight = _weight(rng, fmt, filters, channels, kernel, block, density)
    x = rng.standard_normal((batch, channels, height, width)).astype("float32")
    extras, expected = epilogue_case(rng, x, dense, stride, padding, epilogue)
    func = block_rows_conv2d_opencl(weight, x.shape, stride=stride, padding=padding, epilogue=epilogue, config=tile)
    arrays = {"data": x, "table": table_argument(func), **extras}
    target = {"kind": "opencl", "device": device, "host": {"kind": "llvm"}}
    out = pocl.run_primfunc(opencl_context, func, arrays, target)["out"]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    if epilogue == Epilogue():
        reference = weight.conv2d(x, stride=stride, padding=padding)
        np.testing.assert_allclose(out, reference, rtol=1e-4, atol=1e-4)


def test_tables_hold_every_kept_weight_once():
    rng = np.random.default_rng(1)
    dense = block_punched(rng, (20, 12, 3, 3), (8, 4), 0.3)
    bk, (row_ptr, taps, values) = block_rows(BlockPunchedWeight.from_dense(dense, (8, 4)))
    rebuilt = np.zeros_like(dense)
    taps, values = taps.reshape(-1, 3), values.reshape(-1, bk)
    for row in range(len(row_ptr) - 1):
        for column in range(row_ptr[row], row_ptr[row + 1]):
            c, r, s = taps[column]
            filters = slice(row * bk, min((row + 1) * bk, 20))
            rebuilt[filters, c, r, s] += values[column, : filters.stop - filters.start]
    np.testing.assert_array_equal(rebuilt, dense)


def test_rejects_other_formats():
    with pytest.raises(TypeError, match="BlockPunchedWeight or a BSRWeight"):
        block_rows_conv2d_opencl(np.zeros((4, 4, 3, 3)), (1, 4, 8, 8))


def test_rejects_bad_tile():
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        BlockRowsTile(chunk=0)

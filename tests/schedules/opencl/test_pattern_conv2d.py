"""The OpenCL (Mali/Adreno) pattern kernel, run on PoCL (OpenCL on this CPU) with launch sizes from its schedule.

PoCL comes from Debian (``scripts/install-pocl.sh``, run by ``scripts/setup.sh test``; the
``opencl_context`` fixture skips, or fails in CI, without it); PyOpenCL from the project's ``test`` extra.
"""

import zlib

import numpy as np
import pytest

import tvm
from schedules.epilogue import Epilogue
from schedules.kernel_table import table_argument
from schedules.opencl.pattern_conv2d import GpuTile, launch_sizes, pattern_conv2d_opencl
from tests.schedules import pocl
from tvm_sparse.formats import PatternWeight
from tvm_sparse.formats.synthetic import pattern_library, pattern_pruned

# (batch, channels, filters, height, width, stride, padding, density, epilogue, tile, device)
CASES = [
    (1, 8, 6, 9, 7, 1, 1, 0.4, Epilogue(bias=True, activation="relu"), None, "mali"),
    (2, 5, 7, 12, 10, 2, 1, 0.5, Epilogue(bias=True, residual=True, activation="relu6"), None, "adreno"),
    (1, 6, 4, 11, 13, 1, (0, 1, 2, 1), 0.6, Epilogue(residual=True), GpuTile(4, 3, 3), "mali"),
    (1, 3, 5, 16, 16, 2, 0, 1.0, Epilogue(bias=True), GpuTile(2, 8, 1), "adreno"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[-1]}_n{c[0]}c{c[1]}k{c[2]}_{c[3]}x{c[4]}_s{c[5]}")
def test_matches_torch_on_pocl(case, opencl_context, epilogue_case):
    batch, channels, filters, height, width, stride, padding, density, epilogue, tile, device = case
    rng = np.random.default_rng(zlib.crc32(str(case).encode()))
    weight = pattern_pruned(rng, filters, channels, pattern_library(8, 4, rng), density)
    fmt = PatternWeight.from_dense(weight)
    x = rng.standard_normal((batch, channels, height, width)).astype("float32")
    extras, expected = epilogue_case(rng, x, weight, stride, padding, epilogue)
    func = pattern_conv2d_opencl(fmt, x.shape, stride=stride, padding=padding, epilogue=epilogue, config=tile)
    arrays = {"data": x, "table": table_argument(func), **extras}
    target = {"kind": "opencl", "device": device, "host": {"kind": "llvm"}}
    (launch,) = pocl.kernel_launches(func, tvm.target.Target(target))
    assert (launch.global_size, launch.local_size) == launch_sizes(func)
    out = pocl.run_primfunc(opencl_context, func, arrays, target)["out"]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_launch_sizes_follow_the_tile():
    fmt = PatternWeight.from_dense(pattern_pruned(np.random.default_rng(0), 3, 2, pattern_library(4, 4), 1.0))
    func = pattern_conv2d_opencl(fmt, (2, 2, 10, 20), config=GpuTile(threads_x=4, rows=5, pixels=2))
    # 2 images x 2 row tiles x 3 column tiles (20 / (4 x 2) rounded up) groups along x, 3 filters along y
    assert launch_sizes(func) == ((12 * 4, 3 * 5, 1), (4, 5, 1))

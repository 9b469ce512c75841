"""The sparse kernels (specialised and compact) for ARM CPUs: NEON code (compiled here) and results on the emulated phone."""

import os
import tempfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tvm
from schedules import registry
from schedules.epilogue import Epilogue
from schedules.kernel_table import table_argument
from schedules.sparse_cpu.block_punched_conv2d import block_punched_conv2d
from schedules.sparse_cpu.bsr_conv2d import bsr_conv2d
from schedules.sparse_cpu.direct_conv import BUILD_CONFIG
from schedules.sparse_cpu.pattern_conv2d import pattern_conv2d
from schedules.target_info import as_target, target_family, vector_lanes
from tvm_sparse.formats import BlockPunchedWeight, BSRWeight, PatternWeight
from tvm_sparse.formats.synthetic import block_punched, block_sparse, pattern_library, pattern_pruned

ARM = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}


def _layers(rng):
    """Small layers: (kernel function, format, dense weight, stride, padding, data shape, choice).

    ``choice`` None: the entry point's default (specialised code for these sizes); else the first
    tuning candidate it accepts.
    """
    pattern = pattern_pruned(rng, 6, 5, pattern_library(6, 4, rng), 0.5)
    punched = block_punched(rng, (8, 5, 3, 3), (8, 4), 0.4)
    bsr = block_sparse(rng, (10, 12, 1, 1), (4, 2), 0.4)
    compact = lambda config: config.codegen == "compact"  # noqa: E731
    return [
        (pattern_conv2d, PatternWeight.from_dense(pattern), pattern, 1, 1, (1, 5, 9, 7), None),
        (block_punched_conv2d, BlockPunchedWeight.from_dense(punched, (8, 4)), punched, 2, 1, (2, 5, 8, 11), None),
        (pattern_conv2d, PatternWeight.from_dense(pattern), pattern, 2, 1, (2, 5, 10, 9), compact),
        (block_punched_conv2d, BlockPunchedWeight.from_dense(punched, (8, 4)), punched, 1, 1, (1, 5, 7, 13), compact),
        (bsr_conv2d, BSRWeight.from_dense(bsr, (4, 2)), bsr, 1, 0, (1, 12, 6, 5), compact),
        (pattern_conv2d, PatternWeight.from_dense(pattern), pattern, 1, 1, (2, 5, 9, 7),
         lambda config: config.register_shifts),  # NEON ext/tbl shuffles
    ]


def _build(kernel, fmt, shape, stride, padding, choice):
    config = None
    if choice is not None:
        candidates = registry.kernel(kernel.__name__).candidates(fmt, shape, ARM, stride=stride, padding=padding)
        config = next(c for c in candidates if choice(c))
    func = kernel(fmt, shape, stride=stride, padding=padding, target=ARM, config=config,
                  epilogue=Epilogue(bias=True, activation="relu6"), name="sparse_layer")
    with tvm.transform.PassContext(opt_level=3, config=BUILD_CONFIG):
        return tvm.compile(tvm.IRModule({"sparse_layer": func}), target=as_target(ARM)), table_argument(func)


def test_arm_target_gets_neon_vectors():
    assert target_family(ARM) == "arm_cpu"
    assert vector_lanes(ARM) == 4
    for kernel, fmt, _, stride, padding, shape, choice in _layers(np.random.default_rng(0))[::2]:
        assembly = _build(kernel, fmt, shape, stride, padding, choice)[0].mod.inspect_source("asm")
        assert "fmla" in assembly and ".4s" in assembly


@pytest.mark.phone
def test_kernels_on_the_emulated_phone(phone):
    from tvm_sparse.target import AARCH64_LINUX_CXX
    from tvm_sparse.rpc import request_device

    rng = np.random.default_rng(1)
    session = request_device(phone.tracker, phone.key, session_timeout=600)
    dev = session.cpu()
    for index, (kernel, fmt, dense, stride, padding, shape, choice) in enumerate(_layers(rng)):
        x = rng.standard_normal(shape).astype("float32")
        bias = rng.standard_normal(dense.shape[0]).astype("float32")
        expected = torch.clamp(
            F.conv2d(torch.from_numpy(x), torch.from_numpy(dense), torch.from_numpy(bias), stride, padding), 0, 6
        ).numpy()
        executable, table = _build(kernel, fmt, shape, stride, padding, choice)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, f"sparse_kernel_{index}.so")
            executable.export_library(
                path, fcompile=tvm.support.cc.cross_compiler(AARCH64_LINUX_CXX)
            )
            session.upload(path)
        function = session.load_module(os.path.basename(path))["sparse_layer"]
        out = tvm.runtime.tensor(np.zeros(expected.shape, "float32"), dev)
        tables = [] if table is None else [tvm.runtime.tensor(table, dev)]
        function(tvm.runtime.tensor(x, dev), tvm.runtime.tensor(bias, dev), *tables, out)
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)

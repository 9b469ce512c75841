"""The kernels work inside a Relax program: ``BlockBuilder.add_func`` + ``relax.call_tir``."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tvm
from tvm import relax
from schedules.epilogue import Epilogue
from schedules.sparse_cpu.block_punched_conv2d import block_punched_conv2d
from schedules.sparse_cpu.bsr_conv2d import bsr_conv2d
from schedules.sparse_cpu.direct_conv import BUILD_CONFIG
from schedules.sparse_cpu.pattern_conv2d import pattern_conv2d
from schedules.target_info import as_target
from tvm_sparse.formats import BlockPunchedWeight, BSRWeight, PatternWeight
from tvm_sparse.formats.synthetic import block_punched, block_sparse, pattern_library, pattern_pruned


def _kernel(index, rng):
    if index == 0:
        dense = pattern_pruned(rng, 6, 5, pattern_library(6, 4, rng), 0.5)
        return pattern_conv2d, PatternWeight.from_dense(dense), dense, 1
    if index == 1:
        dense = block_punched(rng, (6, 5, 3, 3), (4, 2), 0.5)
        return block_punched_conv2d, BlockPunchedWeight.from_dense(dense, (4, 2)), dense, 1
    dense = block_sparse(rng, (6, 5, 1, 1), (2, 1), 0.5)
    return bsr_conv2d, BSRWeight.from_dense(dense, (2, 1)), dense, 0


@pytest.mark.parametrize("index", range(3), ids=["pattern", "block_punched", "bsr"])
def test_call_tir_in_relax(index):
    rng = np.random.default_rng(index)
    kernel, fmt, dense, padding = _kernel(index, rng)
    x = rng.standard_normal((1, 5, 7, 6)).astype("float32")
    bias = rng.standard_normal(6).astype("float32")
    func = kernel(fmt, x.shape, padding=padding, epilogue=Epilogue(bias=True, activation="relu"), name="sparse_conv")
    out_shape = tuple(int(d) for d in func.params[-1].shape)
    builder = relax.BlockBuilder()
    data = relax.Var("x", relax.TensorType(x.shape, "float32"))
    with builder.function("main", [data]):
        with builder.dataflow():
            callee = builder.add_func(func, "sparse_conv")
            call = relax.call_tir(callee, relax.Tuple([data, relax.const(bias)]), out_ty=relax.TensorType(out_shape, "float32"))
            result = builder.emit_output(builder.emit(call))
        builder.emit_func_output(result)
    with tvm.transform.PassContext(opt_level=3, config=BUILD_CONFIG):
        executable = tvm.compile(builder.get(), target=as_target(None))
    got = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(x, tvm.cpu())).numpy()
    expected = torch.relu(F.conv2d(torch.from_numpy(x), torch.from_numpy(dense), torch.from_numpy(bias), padding=padding))
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-4)

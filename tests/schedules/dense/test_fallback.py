"""Pooling, means and stand-alone element-wise functions: the fallback schedule runs them in parallel."""

import numpy as np
import torch
from tvm import relax

from schedules.dense.fallback import ParallelFallback
from tests.conftest import relative_error
from tests.schedules.dense.harness import host_target, primfuncs, run, scheduled_module


def _pool_module(shape):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.max_pool2d(x, pool_size=(2, 2), strides=(2, 2)))
            y = bb.emit(relax.op.nn.relu(y))
            y = bb.emit(relax.op.mean(y, axis=[2, 3], keepdims=True))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def test_pooling_and_mean_are_parallel_and_match_pytorch():
    x = np.random.default_rng(0).standard_normal((1, 64, 32, 32)).astype("float32")
    mod = _pool_module(x.shape)
    target = host_target()
    scheduled = scheduled_module(mod, target)
    funcs = primfuncs(scheduled)
    assert all(f.attrs.get("tirx.is_scheduled", False) for f in funcs.values())
    assert any("T.parallel" in f.script() for f in funcs.values())
    with torch.no_grad():
        expected = torch.relu(torch.nn.functional.max_pool2d(torch.from_numpy(x), 2)).mean((2, 3), keepdim=True)
    assert relative_error(run(scheduled, target, x), expected.numpy()) <= 1e-6


def test_fallback_leaves_scheduled_functions_alone():
    target = host_target()
    funcs = primfuncs(scheduled_module(_pool_module((1, 64, 32, 32)), target))
    for func in funcs.values():
        assert ParallelFallback().apply(func, target, False) is None

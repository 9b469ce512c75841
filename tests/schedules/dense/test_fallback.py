"""Pooling, means and stand-alone element-wise functions: the fallback schedule runs them in parallel.

Means sum into vector-wide partial sums; an element-wise block keeps its map rows as vector steps
under the parallel loop, so a per-channel operand is a broadcast scalar.
"""

import numpy as np
import pytest
import torch
import tvm
from tvm import relax, s_tir
from tvm.tirx import ForKind
from tvm.s_tir.dlight.analysis import get_root_block

from schedules.dense.fallback import ParallelFallback
from schedules.target_info import vector_lanes
from tests.conftest import relative_error
from tests.schedules.dense.harness import AVX512, host_target, primfuncs, run, scheduled_module
from tests.schedules.threaded_run import outputs_at_thread_counts


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


def _single_op_module(op, *shapes):
    """A Relax module applying ``op`` to one input per shape."""
    bb = relax.BlockBuilder()
    inputs = [relax.Var(f"x{i}", relax.TensorType(shape, "float32")) for i, shape in enumerate(shapes)]
    with bb.function("main", inputs):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(op(*inputs)))
        bb.emit_func_output(out)
    return bb.get()


def _only_primfunc(scheduled):
    (func,) = primfuncs(scheduled).values()
    return func


def _loop_kinds(func):
    """``{block name: [(loop kind, extent), ...]}`` of the root blocks of the scheduled ``func``."""
    sch = s_tir.Schedule(func)
    return {sch.get(block).name_hint: [(sch.get(loop).kind, int(sch.get(loop).extent))
                                       for loop in sch.get_loops(block)]
            for block in sch.get_child_blocks(get_root_block(sch))}


# (channels, height, width, width of the vector partial sums on AVX-512 / None: a sum in sequence)
MEAN_CASES = [(120, 28, 28, 16), (672, 14, 14, 4), (960, 7, 7, None), (400, 10, 6, 4), (128, 9, 18, None)]


@pytest.mark.parametrize("case", MEAN_CASES, ids=lambda c: f"C{c[0]}-{c[1]}x{c[2]}")
def test_mean_sums_vector_partial_sums_and_matches_numpy(case):
    channels, height, width, partial_width = case
    x = np.random.default_rng(1).standard_normal((1, channels, height, width)).astype("float32")
    module = _single_op_module(lambda v: relax.op.mean(v, axis=[2, 3], keepdims=True), x.shape)
    loops = _loop_kinds(_only_primfunc(scheduled_module(module, tvm.target.Target(AVX512))))
    partial = [name for name in loops if name.endswith("_rf")]
    if partial_width is None:
        assert not partial
    else:
        (name,) = partial
        assert loops[name][0] == (ForKind.PARALLEL, channels)
        assert loops[name][-1] == (ForKind.VECTORIZED, partial_width)
    target = host_target()
    expected = x.astype("float64").mean((2, 3), keepdims=True)
    assert relative_error(run(scheduled_module(module, target), target, x), expected) <= 1e-6


# (channels, height, width, extent of the parallel loop on AVX-512): the vector steps stay in one channel
SCALE_CASES = [(120, 28, 28, 120), (672, 14, 14, 672 * 14), (960, 7, 7, 960 * 7), (3, 224, 224, 3 * 224), (5, 3, 3, None)]


@pytest.mark.parametrize("case", SCALE_CASES, ids=lambda c: f"C{c[0]}-{c[1]}x{c[2]}")
def test_per_channel_scale_runs_rows_in_parallel_and_matches_numpy(case):
    channels, height, width, parallel_extent = case
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, channels, height, width)).astype("float32")
    scale = rng.standard_normal((1, channels, 1, 1)).astype("float32")
    target = host_target()
    scheduled = scheduled_module(_single_op_module(relax.op.multiply, x.shape, scale.shape), target)
    (loops,) = _loop_kinds(_only_primfunc(scheduled)).values()
    if parallel_extent is None:  # too little work to wake the threads
        assert all(kind == ForKind.SERIAL for kind, _ in loops)
    elif vector_lanes(target) == 16:
        assert loops[0] == (ForKind.PARALLEL, parallel_extent)
        assert loops[-1][0] == ForKind.VECTORIZED
    np.testing.assert_array_equal(run(scheduled, target, x, scale), x * scale)


def test_elementwise_without_whole_vectors_runs_in_parallel_unvectorized():
    """A data-parallel block whose extents never multiply to whole vectors (and whose last loop is
    longer than four vectors) runs in parallel as one loop, without a predicated vector step."""
    shape = (1, 3, 100, 101)
    rng = np.random.default_rng(4)
    x, y = (rng.standard_normal(shape).astype("float32") for _ in range(2))
    target = host_target()
    scheduled = scheduled_module(_single_op_module(relax.op.add, shape, shape), target)
    (loops,) = _loop_kinds(_only_primfunc(scheduled)).values()
    assert loops == [(ForKind.PARALLEL, 3 * 100 * 101)]
    np.testing.assert_array_equal(run(scheduled, target, x, y), x + y)


def test_mean_matches_numpy_at_any_thread_count(tmp_path):
    x = np.random.default_rng(3).standard_normal((1, 72, 28, 28)).astype("float32")
    target = host_target()
    scheduled = scheduled_module(_single_op_module(lambda v: relax.op.mean(v, axis=[2, 3], keepdims=True), x.shape),
                                 target)
    expected = x.astype("float64").mean((2, 3), keepdims=True)
    outputs = outputs_at_thread_counts(_only_primfunc(scheduled), target, [x, np.zeros(expected.shape, "float32")],
                                       tmp_path)
    for threads, output in outputs.items():
        assert relative_error(output, expected) <= 1e-6, f"{threads} threads"

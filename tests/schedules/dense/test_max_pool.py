"""Max pooling through the schedule phase: register-tiled like a depthwise convolution, against PyTorch.

Each case runs the scheduled kernel at 1, 2 and 3 threads in a fresh process
(``tests.schedules.threaded_run``): the padding is filled in the same parallel launch as the tiles,
so a missing barrier would show as values of the previous run. NaN in the input propagates as in
PyTorch.
"""


import numpy as np
import pytest
import torch
from tvm import relax

from tests.conftest import relative_error
from tests.schedules.dense.harness import host_target, primfuncs, run, scheduled_module
from tests.schedules.threaded_run import outputs_at_thread_counts

# (channels, height, width, kernel, stride, padding)
CASES = [
    (64, 112, 112, 3, 2, 1),  # the ImageNet ResNet stem's pooling
    (16, 32, 32, 2, 2, 0),  # CIFAR-style halving
    (8, 15, 13, 3, 2, 1),  # odd sizes
    (8, 40, 38, 3, 2, 1),  # columns split by residue, a vector and a rest per row
    (16, 34, 34, 3, 3, 1),  # columns split into 3 residues
    (24, 9, 9, 3, 1, 1),  # stride 1
    (5, 7, 6, 2, 1, 0),  # nothing divides anything
]


def _case_id(case):
    return "C{}-{}x{}-k{}-s{}-p{}".format(*case)


def _pool_module(shape, kernel, stride, padding):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.nn.max_pool2d(x, pool_size=kernel, strides=stride,
                                                                 padding=padding)))
        bb.emit_func_output(out)
    return bb.get()


def _expected(x, kernel, stride, padding):
    return torch.nn.functional.max_pool2d(torch.from_numpy(x), kernel, stride, padding).numpy()


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_max_pool_is_register_tiled_and_matches_pytorch_at_any_thread_count(case, tmp_path):
    channels, height, width, kernel, stride, padding = case
    x = np.random.default_rng(sum(map(ord, _case_id(case)))).standard_normal((1, channels, height, width))
    x = x.astype("float32")
    target = host_target()
    scheduled = scheduled_module(_pool_module(x.shape, kernel, stride, padding), target)
    (pool,) = [f for name, f in primfuncs(scheduled).items() if "max_pool2d" in name]
    script = pool.script()
    # the register tile: the reduction's init split off, the window reduced into vector registers
    assert 'T.sblock("max_pool2d_init")' in script and "T.vectorized(" in script and "T.parallel(" in script
    expected = _expected(x, kernel, stride, padding)

    arrays = [x, np.zeros(expected.shape, "float32")]
    for threads, output in outputs_at_thread_counts(pool, target, arrays, tmp_path).items():
        assert relative_error(output, expected) == 0.0, f"{threads} threads"


def test_max_pool_propagates_nan_as_pytorch_does():
    x = np.random.default_rng(1).standard_normal((1, 16, 16, 16)).astype("float32")
    x[0, 3, 5, 7] = np.nan
    x[0, 9, 0, 0] = -np.inf
    target = host_target()
    got = run(scheduled_module(_pool_module(x.shape, 3, 2, 1), target), target, x)
    np.testing.assert_array_equal(got, _expected(x, 3, 2, 1))

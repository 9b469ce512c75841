"""A reduction whose epilogue broadcasts its result to a larger output (squeeze-excite) is computed once.

Squeeze-excite scales a whole map by a per-channel factor that a 1x1 convolution of a 1x1 map
computes; TVM fuses the convolution, its activation and the scaling into one function whose
output is the whole map. The register tile must not recompute the convolution for every pixel it
scales: the convolution's block runs as often as its own outputs need, and the result matches
PyTorch.
"""

import math

import numpy as np
import pytest
import torch
from tvm import relax, s_tir

from schedules.dense.conv2d import WeightPacking

from tests.conftest import relative_error
from tests.schedules.dense.harness import host_target, primfuncs, run, scheduled_module
from tests.schedules.threaded_run import outputs_at_thread_counts

# (squeezed channels, channels, height and width of the scaled map)
CASES = [(32, 128, 14, 14), (24, 72, 28, 28), (8, 20, 5, 7), (240, 960, 7, 7)]


def _squeeze_excite_module(squeezed_shape, w, bias, scaled_shape):
    """``x * hardsigmoid(conv1x1(s, w) + bias)``: a 1x1 map's convolution scaling the map ``x``."""
    bb = relax.BlockBuilder()
    s = relax.Var("s", relax.TensorType(squeezed_shape, "float32"))
    x = relax.Var("x", relax.TensorType(scaled_shape, "float32"))
    with bb.function("main", [s, x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(s, relax.const(w)))
            y = bb.emit(relax.op.add(y, relax.const(bias.reshape(1, -1, 1, 1))))
            y = bb.emit(relax.op.divide(relax.op.clip(relax.op.add(y, relax.const(3.0)), 0.0, 6.0),
                                        relax.const(6.0)))
            out = bb.emit_output(bb.emit(relax.op.multiply(x, y)))
        bb.emit_func_output(out)
    return bb.get()


def _case_arrays(case, seed):
    """The squeezed map, the scaled map, the weight, the bias, and PyTorch's result for ``case``."""
    squeezed, channels, height, width = case
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((1, squeezed, 1, 1)).astype("float32")
    x = rng.standard_normal((1, channels, height, width)).astype("float32")
    w = rng.standard_normal((channels, squeezed, 1, 1)).astype("float32")
    bias = rng.standard_normal(channels).astype("float32")
    with torch.no_grad():
        scale = torch.nn.functional.hardsigmoid(
            torch.nn.functional.conv2d(torch.from_numpy(s), torch.from_numpy(w), torch.from_numpy(bias)))
    return s, x, w, bias, (torch.from_numpy(x) * scale).numpy()


def _executions(func, block_name):
    """How often the block ``block_name`` of ``func`` runs: the product of its loops' extents."""
    sch = s_tir.Schedule(func)
    return math.prod(int(sch.get(loop).extent) for loop in sch.get_loops(sch.get_sblock(block_name)))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"C{c[0]}-K{c[1]}-{c[2]}x{c[3]}")
def test_squeeze_excite_computes_its_convolution_once(case):
    s, x, w, bias, expected = _case_arrays(case, seed=0)
    target = host_target()
    scheduled = scheduled_module(_squeeze_excite_module(s.shape, w, bias, x.shape), target)
    convs = [f for f in primfuncs(scheduled).values() if "conv2d_nchw" in f.script()]
    assert len(convs) == 1
    # once per output and input channel, not once more per pixel of the scaled map
    assert _executions(convs[0], "conv2d_nchw_update") == case[0] * case[1]
    assert relative_error(run(scheduled, target, s, x), expected) <= 1e-5


@pytest.mark.parametrize("case", CASES[:2], ids=lambda c: f"C{c[0]}-K{c[1]}-{c[2]}x{c[3]}")
def test_squeeze_excite_matches_pytorch_at_any_thread_count(case, tmp_path):
    """The broadcasting tail runs in its own parallel loop after the tiles: right at 1, 2 and 3 threads.

    The kernel runs in a fresh process (``tests.schedules.threaded_run``), each thread count right
    after a run on other inputs, so a tail that read the per-channel results before every tile
    was written would find the earlier run's values.
    """
    s, x, w, bias, expected = _case_arrays(case, seed=1)
    target = host_target()
    scheduled = scheduled_module(_squeeze_excite_module(s.shape, w, bias, x.shape), target)
    (conv,) = [f for f in primfuncs(scheduled).values() if "conv2d_nchw" in f.script()]
    packed = WeightPacking(param=1, channels_per_block=int(conv.params[1].shape[-1])).pack(w)
    # the fused function's parameters: the squeezed map, the packed weight, the bias, the scaled map, the output
    arrays = [s, packed, bias.reshape(1, -1, 1, 1), x, np.zeros(expected.shape, "float32")]
    assert [tuple(int(d) for d in p.shape) for p in conv.params] == [a.shape for a in arrays]

    for threads, output in outputs_at_thread_counts(conv, target, arrays, tmp_path).items():
        assert relative_error(output, expected) <= 1e-5, f"{threads} threads"

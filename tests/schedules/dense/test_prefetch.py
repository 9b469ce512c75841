"""The dense convolutions' prefetch of the next filter tile's weights (``schedules.dense.prefetch``).

The prefetches are checked for what they fetch (every line of the weights that a next filter
tile reads, each about once, evaluated over all the loops' values), for where a profile asks for
them, for the tuning builder inserting them too, and for results that match PyTorch with them at
1, 2 and 3 threads.
"""

import itertools
import math

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import tirx

from schedules import profiles
from schedules.dense.conv2d import WeightPacking
from schedules.dense.prefetch import CACHE_LINE_BYTES, PIXEL_TILES, PREFETCH_WEIGHT, substitute
from schedules.dense.space import dense_schedule
from schedules.profiles import profile_for
from relay_passes.pipeline import build_pipeline
from tests.conftest import relative_error
from tests.schedules.dense.harness import conv2d_module, host_target, primfuncs, scheduled_module, torch_conv2d
from tests.schedules.threaded_run import outputs_at_thread_counts
from tvm_sparse.tuning.runners import build_function

ROCKET_LAKE = {"kind": "llvm", "mcpu": "rocketlake"}

# (channels, filters, size, kernel, stride): layers whose weights do not fit in L1
CASES = [
    (64, 64, 7, 3, 1),  # 3x3 on 7x7: a register tile of 7 pixels, 7 pixel tiles per filter tile
    (96, 48, 14, 3, 2),  # 3x3, stride 2, 14 -> 7
    (128, 64, 14, 3, 1),  # 3x3 on 14x14: more pixel tiles than lines in a chunk
    (512, 160, 7, 1, 1),  # 1x1 on 7x7 in panels (filters in the lanes), several channel blocks
    (256, 96, 14, 1, 1),  # 1x1 on 14x14
]


def _case_id(case):
    return "C{}-K{}-{}x{}-k{}-s{}".format(case[0], case[1], case[2], case[2], *case[3:])


def _scheduled_conv(case, target, seed=0):
    """``(convolution PrimFunc, its module's inputs)`` of ``case`` through the schedule phase."""
    channels, filters, size, kernel, stride = case
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((filters, channels, kernel, kernel)) / math.sqrt(channels * kernel**2)).astype("float32")
    bias = rng.standard_normal(filters).astype("float32")
    x = rng.standard_normal((1, channels, size, size)).astype("float32")
    mod = conv2d_module(x.shape, weight, stride, kernel // 2, 1, 1, bias, "relu", None)
    (conv,) = [f for name, f in primfuncs(scheduled_module(mod, target)).items() if "conv2d" in name]
    return conv, (x, weight, bias)


def _prefetch_calls(func):
    """The ``BufferLoad`` whose address each prefetch of ``func`` takes."""
    loads = []

    def visit(call):
        if call.op.same_as(tvm.ir.Op.get("tirx.prefetch")):
            loads.append(call.args[0].args[0])

    tvm_ffi.structural_walk(func.body, (tvm.ir.expr.Call, visit))
    return loads


def _prefetched_lines(func):
    """How many times each cache line of the weight (``{line: count}``) the prefetches of ``func`` fetch.

    Every prefetch's address is evaluated at every value of the loops it depends on.
    """
    extents = []
    tvm_ffi.structural_walk(func.body, (tirx.For, lambda loop: extents.append((loop.loop_var, int(loop.extent)))))
    counts = {}
    analyzer = tvm.sym.Analyzer()
    for load in _prefetch_calls(func):
        shape = [int(dim) for dim in load.source.shape]
        flat = 0
        for index, extent in zip(load.indices, shape):
            flat = flat * extent + index
        used = _variables(flat)
        ranges = [next(extent for loop_var, extent in extents if loop_var.same_as(var)) for var in used]
        for values in itertools.product(*(range(r) for r in ranges)):
            bound = substitute(flat, zip(used, values))
            line = int(analyzer.simplify(bound)) * 4 // CACHE_LINE_BYTES
            counts[line] = counts.get(line, 0) + 1
    return counts, shape


def _variables(expr):
    """The distinct variables of ``expr``."""
    found = []

    def visit(var):
        if not any(var.same_as(seen) for seen in found):
            found.append(var)

    tvm_ffi.structural_walk(expr, (tirx.Var, visit))
    return found


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_prefetches_fetch_every_line_of_the_next_filter_tiles_about_once(case):
    """On Rocket Lake (whose profile prefetches on these maps) the prefetches of all pixel tiles and
    chunks fetch every line of every filter tile but the first (each the next of another), nothing
    else, and in all at most a quarter more lines than that."""
    conv, _ = _scheduled_conv(case, tvm.target.Target(ROCKET_LAKE))
    script = conv.script()
    assert PREFETCH_WEIGHT not in script and PIXEL_TILES not in script
    counts, shape = _prefetched_lines(conv)
    lines_per_tile = math.prod(shape[1:]) * 4 // CACHE_LINE_BYTES
    assert shape[0] > 1 and len(conv.params[1].shape) == 5
    assert set(counts) == set(range(lines_per_tile, shape[0] * lines_per_tile))
    assert sum(counts.values()) <= 1.25 * (shape[0] - 1) * lines_per_tile + lines_per_tile


@pytest.mark.parametrize("target, size, prefetched", [
    (ROCKET_LAKE, 28, True),  # 784 pixels: the profile's limit
    (ROCKET_LAKE, 56, False),  # larger maps have the multiply-adds to hide the loads behind
    ({"kind": "llvm", "mcpu": "znver4"}, 7, False),  # a profile without the fit
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}, 7, False),
])
def test_profiles_say_which_maps_prefetch(target, size, prefetched):
    conv, _ = _scheduled_conv((64, 64, size, 3, 1), tvm.target.Target(target))
    assert bool(_prefetch_calls(conv)) == prefetched


def test_weights_within_l1_are_not_prefetched():
    """A convolution whose packed weights fit in L1 runs every filter tile of a pixel tile in turn,
    with nothing to prefetch."""
    conv, _ = _scheduled_conv((16, 32, 7, 3, 1), tvm.target.Target(ROCKET_LAKE))
    assert 4 * math.prod(int(d) for d in conv.params[1].shape) <= profile_for(tvm.target.Target(ROCKET_LAKE)).l1_data_bytes
    assert not _prefetch_calls(conv)


def test_tuning_builds_candidates_with_their_prefetches():
    """MetaSchedule's candidates carry the marks in their trace; the tuning builder inserts the
    prefetches as ``tvm_sparse.compile`` does, so a candidate is measured as it will run."""
    target = tvm.target.Target(ROCKET_LAKE)
    rng = np.random.default_rng(1)
    mod = conv2d_module((1, 64, 7, 7), rng.standard_normal((64, 64, 3, 3)).astype("float32"), 1, 1, 1, 1,
                        None, "relu", None)
    packed = build_pipeline(target, until="pack")(mod)
    (func,) = [f for name, f in primfuncs(packed).items() if "conv2d" in name]
    sch = dense_schedule(func, target, True)
    assert PREFETCH_WEIGHT in sch.mod.script()
    library = build_function(tvm.IRModule({"main": sch.mod["main"].with_attr("global_symbol", "main")}), target, None)
    assert "prefetcht1" in library.inspect_source("asm")


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_prefetching_convolutions_match_pytorch_at_any_thread_count(case, tmp_path, monkeypatch):
    """With this CPU's profile made to prefetch on every map, at 1, 2 and 3 threads."""
    target = host_target()
    mcpu = str(target.attrs["mcpu"])
    family = profile_for(target).family
    monkeypatch.setitem(profiles._CPU_PROFILES, mcpu,  # pylint: disable=protected-access
                        profile_for(target).derived(mcpu, family, "test", weight_prefetch_max_pixels=10**6,
                                                    winograd_min_channels=None))  # direct, not Winograd (Zen 3)
    conv, (x, weight, bias) = _scheduled_conv(case, target, seed=case[0])
    assert _prefetch_calls(conv)
    _, filters, _, kernel, stride = case
    expected = torch_conv2d(x, weight, bias, stride, kernel // 2, 1, 1, None, "relu")
    packed = WeightPacking(param=1, channels_per_block=int(conv.params[1].shape[-1])).pack(weight)
    arrays = [x, packed, bias.reshape(1, filters, 1, 1), np.zeros(expected.shape, "float32")]
    for threads, output in outputs_at_thread_counts(conv, target, arrays, tmp_path).items():
        assert relative_error(output, expected) <= 1e-5, f"{threads} threads"

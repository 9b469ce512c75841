"""The dense conv2d rule as a MetaSchedule search space (the tuning issue tunes through it)."""

import numpy as np
import pytest
import tvm
from tvm.s_tir import meta_schedule as ms
from tvm_ffi import structural_equal

from schedules.dense.conv2d import DenseConv2dNCHW
from schedules.dense.space import dense_search_space
from tests.schedules.dense.harness import (conv2d_module, host_target, primfuncs, run, scheduled_module,
                                           torch_conv2d)


def _packed_conv(target):
    rng = np.random.default_rng(3)
    weight = rng.standard_normal((32, 16, 3, 3)).astype("float32")
    mod = conv2d_module((1, 16, 8, 8), weight, 1, 1, 1, 1, None, "relu", None)
    from relay_passes.pipeline import build_pipeline

    mod = build_pipeline(target, until="pack")(mod)
    (conv,) = [f for name, f in primfuncs(mod).items() if "conv2d" in name]
    return conv, weight


def test_tunable_space_samples_tiles():
    target = host_target()
    conv, _ = _packed_conv(target)
    sch = DenseConv2dNCHW().apply(conv, target, tunable=True)
    decisions = [inst for inst in sch.trace.insts if inst.kind.name == "SampleCategorical"]
    assert len(decisions) == 2  # tile rows and tile columns


@pytest.mark.slow
@pytest.mark.tuning
def test_metaschedule_tunes_the_dense_conv2d_space(tmp_path):
    target = tvm.target.Target(dict(host_target().export(), **{"num-cores": 2}))
    conv, weight = _packed_conv(target)
    mod = tvm.IRModule({"main": conv.with_attr("global_symbol", "main")})
    database = ms.tune_tir(
        mod, target, str(tmp_path), max_trials_global=4, num_trials_per_iter=4,
        space=dense_search_space(target),
        builder=ms.builder.LocalBuilder(max_workers=1, timeout_sec=300),
        runner=ms.runner.LocalRunner(timeout_sec=60),
    )
    sch = ms.tir_integration.compile_tir(database, mod, target)
    assert sch is not None
    lib = tvm.compile(sch.mod, target=target)
    x = np.random.default_rng(4).standard_normal((1, 16, 8, 8)).astype("float32")
    packed = weight.reshape(2, 16, 16, 3, 3).transpose(0, 2, 3, 4, 1).copy()
    out = tvm.runtime.tensor(np.zeros((1, 32, 8, 8), "float32"))
    lib(tvm.runtime.tensor(x), tvm.runtime.tensor(packed), out)
    expected = torch_conv2d(x, weight, None, 1, 1, 1, 1, None, "relu")
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_tuned_schedules_in_context_replace_the_untuned_ones():
    """A database record (here: the space with a non-default tile width) is applied by the pipeline."""
    target = host_target()
    conv, weight = _packed_conv(target)
    mod = conv2d_module((1, 16, 8, 8), weight, 1, 1, 1, 1, None, "relu", None)
    space = DenseConv2dNCHW().apply(conv, target, tunable=True)
    width = [inst for inst in space.trace.insts if inst.kind.name == "SampleCategorical"][1]
    trace = space.trace.with_decision(width, 1, remove_postproc=True)  # second candidate, not the default
    database = ms.database.MemoryDatabase()
    # Workloads are stored as tune_tir stores them: the function named by a global symbol.
    workload = database.commit_workload(tvm.IRModule({"main": conv.with_attr("global_symbol", "main")}))
    database.commit_tuning_record(ms.database.TuningRecord(trace, workload, [1e-4], target,
                                                           ms.arg_info.ArgInfo.from_prim_func(conv)))
    expected_schedule = tvm.s_tir.Schedule(conv)
    trace.apply_to_schedule(expected_schedule, remove_postproc=False)

    with database:
        scheduled = scheduled_module(mod, target)
    (tuned,) = [f for name, f in primfuncs(scheduled).items() if "conv2d" in name]
    assert structural_equal(tuned.body, expected_schedule.mod["main"].body, map_free_vars=True)
    untuned = [f for name, f in primfuncs(scheduled_module(mod, target)).items() if "conv2d" in name][0]
    assert not structural_equal(untuned.body, tuned.body, map_free_vars=True)
    x = np.random.default_rng(5).standard_normal((1, 16, 8, 8)).astype("float32")
    expected = torch_conv2d(x, weight, None, 1, 1, 1, 1, None, "relu")
    np.testing.assert_allclose(run(scheduled, target, x), expected, rtol=1e-4, atol=1e-4)

"""The pipeline as a list of named phases: running a part of it, and refusing unknown phases."""

import numpy as np
import pytest
import tvm

from relay_passes.pipeline import PHASES, build_pipeline, pipeline_phases
from tests.schedules.dense.harness import conv2d_module, primfuncs
from tvm_sparse.target import parse_target


def _conv():
    weight = np.random.default_rng(0).standard_normal((8, 4, 3, 3)).astype("float32")
    return conv2d_module((1, 4, 6, 6), weight, 1, 1, 1, 1, None, "relu", None)


@pytest.mark.parametrize("target", ["llvm", {"kind": "opencl", "device": "mali"}])
def test_the_phases_are_named_in_order_and_hold_passes(target):
    phases = pipeline_phases(parse_target(target))
    assert tuple(phase.name for phase in phases) == PHASES
    assert all(isinstance(p, tvm.ir.transform.Pass) for phase in phases for p in phase.passes)


def test_until_pack_leaves_the_dense_convolution_packed_but_unscheduled_and_until_schedule_schedules_it():
    target = parse_target("llvm")
    packed = primfuncs(build_pipeline(target, until="pack")(_conv()))
    scheduled = primfuncs(build_pipeline(target, until="schedule")(_conv()))
    (conv_name,) = [name for name in packed if "conv2d" in name]
    assert not packed[conv_name].attrs.get("tirx.is_scheduled")
    assert scheduled[conv_name].attrs.get("tirx.is_scheduled")
    # the pack phase gives the weight its packed 5-d layout; legalization alone leaves it OIHW
    (legalized,) = [f for name, f in primfuncs(build_pipeline(target, until="legalize")(_conv())).items()
                    if "conv2d" in name]
    assert "T.Buffer((T.int64(8), T.int64(4), T.int64(3), T.int64(3))" in legalized.script()
    assert "T.Buffer((T.int64(1), T.int64(4), T.int64(3), T.int64(3), T.int64(8))" in packed[conv_name].script()


def test_unknown_or_reversed_phases_are_refused_with_the_phase_names():
    target = parse_target("llvm")
    with pytest.raises(ValueError, match="no pipeline phase 'lowr'.*prepare, sparse, legalize, pack, schedule, lower"):
        build_pipeline(target, until="lowr")
    with pytest.raises(ValueError, match="phase 'lower' comes after 'prepare'"):
        build_pipeline(target, start="lower", until="prepare")

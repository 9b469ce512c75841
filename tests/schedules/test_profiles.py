"""Per-target profiles: which profile a target gets, and what each says about its numbers."""

import dataclasses

import pytest
import tvm

from schedules import profiles
from schedules.profiles import profile_for


@pytest.mark.parametrize("target, name", [
    ({"kind": "llvm", "mcpu": "znver5"}, "znver5"),
    ({"kind": "llvm", "mcpu": "znver4"}, "znver4"),
    ({"kind": "llvm", "mcpu": "znver3"}, "znver3"),
    ({"kind": "llvm", "mcpu": "rocketlake"}, "rocketlake"),
    ({"kind": "llvm", "mcpu": "skylake"}, "generic x86"),
    ({"kind": "llvm"}, "generic x86"),
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a55"}, "cortex-a55"),
    ({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}, "cortex-a76"),
    ({"kind": "opencl", "device": "adreno", "host": {"kind": "llvm"}}, "adreno"),
    ({"kind": "opencl", "device": "mali", "host": {"kind": "llvm"}}, "mali"),
])
def test_targets_get_their_profile(target, name):
    assert profile_for(tvm.target.Target(target)).name == name
    assert profile_for(target).name == name


def test_profiles_say_where_their_numbers_come_from():
    for profile in profiles.PROFILES.values():
        assert profile.measure.startswith("tvm-sparse ")
        assert profile is profiles.ROCKET_LAKE or "copied from Rocket Lake" in profile.provenance
    assert profiles.CORTEX_A76.l1_data_bytes == 64 * 1024 and profiles.ZEN5.l1_data_bytes == 48 * 1024


def test_bad_profiles_are_rejected():
    with pytest.raises(ValueError, match="input_slab_bytes"):
        dataclasses.replace(profiles.GENERIC_X86, input_slab_bytes=64 * 1024)
    with pytest.raises(ValueError, match="code budgets"):
        dataclasses.replace(profiles.GENERIC_X86, code_budget_tuning=100)
    with pytest.raises(ValueError, match="panel_pixels"):
        dataclasses.replace(profiles.ZEN3, panel_pixels=0)
    with pytest.raises(ValueError, match="panel_accumulator_bytes"):
        dataclasses.replace(profiles.ZEN3, panel_accumulator_bytes=0)
    with pytest.raises(ValueError, match="panel_min_filters"):
        dataclasses.replace(profiles.ZEN3, panel_min_filters=0)
    with pytest.raises(ValueError, match="panel_task_multiple"):
        dataclasses.replace(profiles.ZEN3, panel_task_multiple=0)
    with pytest.raises(ValueError, match="l2_bytes"):
        dataclasses.replace(profiles.ZEN3, l2_bytes=0)
    with pytest.raises(ValueError, match="winograd_min_channels"):
        dataclasses.replace(profiles.ZEN3, winograd_min_channels=0)
    with pytest.raises(ValueError, match="winograd_max_work"):
        dataclasses.replace(profiles.ZEN3, winograd_max_work=0.0)
    with pytest.raises(ValueError, match="pointwise_pixel_vectors"):
        dataclasses.replace(profiles.ZEN3, pointwise_pixel_vectors=0)
    with pytest.raises(ValueError, match="vector_waste"):
        dataclasses.replace(profiles.ZEN3, vector_waste=0.9)
    with pytest.raises(ValueError, match="one_row_prefetch_tiles"):
        dataclasses.replace(profiles.ZEN3, one_row_prefetch_tiles=-1)
    with pytest.raises(ValueError, match="table_prefetch_bytes"):
        dataclasses.replace(profiles.ZEN3, table_prefetch_bytes=-1)

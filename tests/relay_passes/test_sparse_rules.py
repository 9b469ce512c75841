"""The decide step: thresholds, tiny layers, targets without kernels, plans that force."""

import pytest

from relay_passes.sparse_rules import SparseRules
from relay_passes.sparsity_analysis import WeightStructure
from schedules import profiles


def structure(kind, density):
    return WeightStructure(kind, density, "")


def test_sparse_enough_layers_get_their_kernel():
    rules = SparseRules()
    assert rules.decide(structure("pattern", 0.12), 10**6, "x86")[0] == "pattern_conv2d"
    assert rules.decide(structure("block_punched", 0.1), 10**6, "arm_cpu")[0] == "block_punched_conv2d"


def test_dense_enough_layers_stay_dense_with_the_reason():
    kernel, reason = SparseRules(pattern_max_density=0.3).decide(structure("pattern", 0.44), 10**6, "x86")
    assert kernel is None and "0.44 is above 0.30" in reason
    kernel, reason = SparseRules().decide(structure("pattern", 0.1), 1000, "x86")
    assert kernel is None and "min_macs" in reason
    for kind in ("dense", "unstructured"):
        assert SparseRules().decide(structure(kind, 0.1), 10**6, "x86")[0] is None


def test_gpu_targets_get_the_opencl_kernels():
    assert SparseRules().decide(structure("pattern", 0.1), 10**6, "gpu")[0] == "pattern_conv2d_opencl"
    for kind in ("block_punched", "bsr"):
        assert SparseRules().decide(structure(kind, 0.1), 10**6, "gpu")[0] == "block_rows_conv2d_opencl"


def test_families_without_a_kernel_stay_dense():
    kernel, reason = SparseRules().decide(structure("pattern", 0.1), 10**6, "hexagon")
    assert kernel is None and "no pattern kernel for hexagon" in reason


def test_layers_too_large_to_specialise_stay_dense_even_in_a_plan():
    rules = SparseRules(max_kernel_terms=1000)
    kernel, reason = rules.decide(structure("pattern", 0.1), 10**6, "x86", forced=True, terms=1001)
    assert kernel is None and "max_kernel_terms=1000" in reason
    assert rules.decide(structure("pattern", 0.1), 10**6, "x86", terms=1000)[0] == "pattern_conv2d"
    assert SparseRules(max_kernel_terms=None).decide(structure("pattern", 0.1), 10**6, "x86", terms=10**7)[0]


def test_a_plan_overrides_the_thresholds():
    kernel, reason = SparseRules().decide(structure("pattern", 0.44), 10, "x86", forced=True)
    assert kernel == "pattern_conv2d" and "plan" in reason


@pytest.mark.parametrize("bad", [{"pattern_max_density": 0.0}, {"block_max_density": 1.5}, {"min_macs": -1},
                                 {"max_kernel_terms": 0}])
def test_bad_thresholds_are_rejected(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SparseRules(**bad)


def test_small_maps_need_sparser_patterns():
    rules = SparseRules()
    assert rules.decide(structure("pattern", 0.3), 10**6, "x86", pixels=8 * 8)[0] == "pattern_conv2d"
    kernel, reason = rules.decide(structure("pattern", 0.3), 10**6, "x86", pixels=4 * 4)
    assert kernel is None and "0.30 is above 0.25" in reason
    assert rules.decide(structure("pattern", 0.2), 10**6, "x86", pixels=4 * 4)[0] == "pattern_conv2d"
    assert rules.decide(structure("block_punched", 0.5), 10**6, "x86", pixels=4 * 4)[0] == "block_punched_conv2d"
    kernel, reason = rules.decide(structure("bsr", 0.7), 10**6, "x86")
    assert kernel is None and "0.70 is above 0.60" in reason
    with pytest.raises(ValueError, match="small_map_pattern_max_density"):
        SparseRules(small_map_pattern_max_density=0.0)


def test_thresholds_come_from_the_target_unless_given():
    arm = {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}
    rules = SparseRules(min_macs=0).for_target(arm)
    assert rules.min_macs == 0 and rules.pattern_max_density == profiles.CORTEX_A76.pattern_max_density
    x86 = SparseRules().for_target({"kind": "llvm", "mcpu": "znver5"})
    assert (x86.pattern_max_density, x86.small_map_pixels, x86.small_map_pattern_max_density,
            x86.block_max_density, x86.min_macs) == (0.34, 16, 0.25, 0.6, 100_000)

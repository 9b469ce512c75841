"""The kernel registry: every kernel loads, and the queries by target family and format."""

import numpy as np
import pytest

from schedules import registry
from tvm_sparse.formats import BlockPunchedWeight, BSRWeight


def test_every_kernel_resolves_its_functions():
    for spec in registry.KERNELS.values():
        assert spec.entry_point.__name__ == spec.name
        assert isinstance(spec.config_class, type)
        assert set(spec.formats) <= set(registry.FORMATS)


def test_kernels_for_a_family_and_format():
    assert [k.name for k in registry.kernels_for("x86")] == ["pattern_conv2d", "block_punched_conv2d", "bsr_conv2d"]
    assert [k.name for k in registry.kernels_for("arm_cpu", "bsr")] == ["bsr_conv2d"]
    assert [k.name for k in registry.kernels_for("gpu", BSRWeight)] == ["block_rows_conv2d_opencl"]
    assert [k.name for k in registry.kernels_for("gpu", "pattern")] == ["pattern_conv2d_opencl"]
    assert registry.kernels_for("hexagon") == [] and registry.kernels_for("x86", "unstructured") == []


def test_default_configs_and_candidates():
    weight = BlockPunchedWeight.from_dense(np.ones((8, 8, 3, 3), "float32"), (4, 4))
    cpu = registry.kernel("block_punched_conv2d")
    candidates = cpu.candidates(weight, (1, 8, 8, 8), stride=1)
    assert candidates[0] == cpu.default_config(weight, (1, 8, 8, 8))
    gpu = registry.kernel("block_rows_conv2d_opencl")
    assert isinstance(gpu.default_config(weight, (1, 8, 8, 8)), gpu.config_class)
    with pytest.raises(ValueError, match="no tuning space"):
        gpu.candidates(weight, (1, 8, 8, 8))
    with pytest.raises(TypeError, match="PatternWeight"):
        registry.kernel("pattern_conv2d").default_config(weight, (1, 8, 8, 8))
    with pytest.raises(ValueError, match="unknown sparse kernel"):
        registry.kernel("dense_conv2d")

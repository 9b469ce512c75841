import zlib

import numpy as np
import pytest

from schedules.epilogue import Epilogue
from schedules.sparse_cpu.config import SpecializedConvConfig
from schedules.sparse_cpu.pattern_conv2d import pair_filters, pattern_conv2d, pattern_terms
from tvm_sparse.formats import PatternWeight
from tvm_sparse.formats.synthetic import pattern_library, pattern_pruned

# (batch, channels, filters, height, width, stride, padding, kernel density, epilogue)
CASES = [
    (1, 8, 8, 8, 8, 1, 1, 0.3, Epilogue()),
    (1, 16, 12, 16, 16, 1, 1, 0.28, Epilogue(bias=True, activation="relu")),
    (2, 5, 7, 9, 13, 1, 1, 0.5, Epilogue(bias=True, residual=True, activation="relu")),
    (1, 6, 9, 11, 7, 2, 1, 0.4, Epilogue(bias=True, activation="relu6")),
    (1, 16, 8, 16, 16, 2, 1, 0.28, Epilogue(bias=True)),
    (3, 3, 4, 7, 10, 1, 0, 0.6, Epilogue(residual=True)),
    (1, 4, 5, 6, 9, 2, (0, 1, 2, 1), 0.5, Epilogue(activation="relu")),
    (1, 7, 3, 5, 5, 1, 2, 1.0, Epilogue(bias=True)),
    (2, 9, 6, 12, 4, 2, 0, 0.3, Epilogue(bias=True, residual=True, activation="relu6")),
    (1, 12, 10, 4, 4, 1, 1, 0.05, Epilogue(bias=True, activation="relu")),
]


def _case_arrays(rng, batch, channels, filters, height, width, density, entries=4, patterns=8):
    library = pattern_library(patterns, entries, rng)
    weight = pattern_pruned(rng, filters, channels, library, density)
    x = rng.standard_normal((batch, channels, height, width)).astype("float32")
    return library, weight, x


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c[0]}c{c[1]}k{c[2]}_{c[3]}x{c[4]}_s{c[5]}p{c[6]}")
@pytest.mark.parametrize("codegen", ["default", "compact"])
def test_matches_torch(case, codegen, kernel_matches_torch):
    batch, channels, filters, height, width, stride, padding, density, epilogue = case
    rng = np.random.default_rng(zlib.crc32(str(case).encode()))
    library, weight, x = _case_arrays(rng, batch, channels, filters, height, width, density)
    kernel_matches_torch(pattern_conv2d, PatternWeight.from_dense(weight, library), weight, x, rng, stride, padding,
                         epilogue, codegen)


@pytest.mark.parametrize(
    "config",
    [
        SpecializedConvConfig(lanes=4, vectors=3, rows=2, channel_block=3, row_tiles=1, filter_splits=2),
        SpecializedConvConfig(lanes=16, vectors=1, rows=3, channel_block=100, row_tiles=4, filter_splits=1),
        SpecializedConvConfig(lanes=8, vectors=2, rows=1, channel_block=1, row_tiles=3, filter_splits=3),
    ],
)
def test_knobs_keep_results(config, run_kernel):
    """Every knob setting computes the same convolution (tails in width, height and channels)."""
    rng = np.random.default_rng(7)
    library, weight, x = _case_arrays(rng, 2, 10, 9, 11, 13, 0.4, entries=5, patterns=6)
    fmt = PatternWeight.from_dense(weight, library)
    func = pattern_conv2d(fmt, x.shape, stride=1, padding=1, config=config)
    out = run_kernel(func, [x], (2, 9, 11, 13))
    np.testing.assert_allclose(out, fmt.conv2d(x, stride=1, padding=1), rtol=1e-4, atol=1e-4)


def test_weights_are_literals_not_buffers():
    """The generated code holds the weights as constants: no weight buffer parameter."""
    rng = np.random.default_rng(3)
    library, weight, _ = _case_arrays(rng, 1, 4, 4, 6, 6, 0.5)
    fmt = PatternWeight.from_dense(weight, library)
    func = pattern_conv2d(fmt, (1, 4, 6, 6))
    assert [p.name for p in func.params] == ["data", "out"]
    script = func.script()
    some_weight = float(fmt.values[0, 0])
    assert f"{some_weight:.6f}"[:7] in script


def test_pairs_share_inputs():
    rng = np.random.default_rng(4)
    library = pattern_library(4, 4, rng)
    weight = pattern_pruned(rng, 16, 32, library, 0.3)
    fmt = PatternWeight.from_dense(weight, library)
    terms = pattern_terms(fmt)
    blocks = pair_filters(fmt, terms)
    assert sorted(k for b in blocks for k in b) == list(range(16))
    assert all(len(b) == 2 for b in blocks)
    reads = {k: {t[:3] for t in terms[k]} for k in terms}
    shared = sum(len(reads[a] & reads[b]) for a, b in blocks)
    naive = sum(len(reads[a] & reads[b]) for a, b in zip(fmt.filter_ids[::2], fmt.filter_ids[1::2]))
    assert shared >= naive


def test_rejects_other_formats_and_gpu():
    with pytest.raises(TypeError, match="PatternWeight"):
        pattern_conv2d(np.zeros((4, 4, 3, 3)), (1, 4, 8, 8))
    fmt = PatternWeight.from_dense(np.zeros((2, 2, 3, 3), "float32"), pattern_library(4, 4))
    with pytest.raises(ValueError, match="OpenCL"):
        pattern_conv2d(fmt, (1, 2, 8, 8), target={"kind": "opencl", "device": "mali"})
    with pytest.raises(ValueError, match="channels"):
        pattern_conv2d(fmt, (1, 3, 8, 8))

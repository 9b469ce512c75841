import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_sparse.formats import FormatError, PatternWeight
from tvm_sparse.formats.synthetic import pattern_library, pattern_pruned


@st.composite
def pattern_cases(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    entries = draw(st.sampled_from([4, 5]))
    library = pattern_library(draw(st.sampled_from([4, 6, 8, 12])), entries, rng)
    weight = pattern_pruned(
        rng, draw(st.integers(1, 12)), draw(st.integers(1, 12)), library, draw(st.floats(0.05, 1.0))
    )
    return rng, library, weight


@settings(max_examples=40, deadline=None)
@given(pattern_cases(), st.booleans())
def test_round_trip(case, give_library):
    _, library, weight = case
    if not give_library and not weight.any():
        with pytest.raises(FormatError, match="every kernel is zero"):
            PatternWeight.from_dense(weight)
        return
    fmt = PatternWeight.from_dense(weight, library if give_library else None)
    np.testing.assert_array_equal(fmt.to_dense(), weight)
    assert fmt.density == pytest.approx(np.count_nonzero(weight) / weight.size)
    fmt.validate()


@settings(max_examples=40, deadline=None)
@given(pattern_cases(), st.integers(1, 2), st.tuples(*[st.integers(0, 2)] * 4), st.integers(1, 2))
def test_reference_conv_matches_dense_twin(reference_conv_matches_dense_twin, case, stride, padding, batch):
    rng, library, weight = case
    x = rng.standard_normal((batch, weight.shape[1], 5 + int(rng.integers(0, 6)), 4 + int(rng.integers(0, 7))))
    bias = rng.standard_normal(weight.shape[0])
    reference_conv_matches_dense_twin(PatternWeight.from_dense(weight, library), weight, x, stride, padding, bias)


def test_fkw_order():
    rng = np.random.default_rng(1)
    library = pattern_library(6, 4, rng)
    weight = pattern_pruned(rng, 32, 24, library, 0.4)
    fmt = PatternWeight.from_dense(weight, library)
    counts = np.diff(fmt.indptr)
    assert np.all(np.diff(counts) <= 0), "filters are grouped by kept-kernel count, largest first"
    for start, stop in fmt.filter_groups():
        mixes = {tuple(np.bincount(fmt.pattern_ids[fmt.indptr[i] : fmt.indptr[i + 1]], minlength=6)) for i in range(start, stop)}
        assert len(mixes) == 1
    for i in range(len(fmt.filter_ids)):
        kernels = slice(fmt.indptr[i], fmt.indptr[i + 1])
        order = np.lexsort([fmt.channels[kernels], fmt.pattern_ids[kernels]])
        np.testing.assert_array_equal(order, np.arange(len(order)), "kernels sorted by pattern, then channel")


def test_inferred_library_is_the_used_masks():
    rng = np.random.default_rng(2)
    library = pattern_library(4, 4, rng)
    weight = pattern_pruned(rng, 16, 16, library[:3], 0.5)
    fmt = PatternWeight.from_dense(weight)
    used = {m.tobytes() for m in library[:3]}
    assert {m.tobytes() for m in fmt.library} == used


def test_zero_weight_inside_a_pattern_keeps_its_pattern():
    library = pattern_library(4, 4)
    weight = pattern_pruned(np.random.default_rng(3), 4, 4, library, 1.0)
    k, c = 2, 1
    first_tap = np.flatnonzero(weight[k, c].ravel())[0]
    weight[k, c].ravel()[first_tap] = 0.0
    fmt = PatternWeight.from_dense(weight, library)
    np.testing.assert_array_equal(fmt.to_dense(), weight)
    assert fmt.values.shape[1] == 4


def test_kernel_outside_library_names_filter_and_channel():
    library = pattern_library(4, 4)
    weight = pattern_pruned(np.random.default_rng(4), 5, 6, library, 1.0)
    weight[3, 2] = 0
    weight[3, 2, 0, 0] = weight[3, 2, 2, 2] = 1.0  # no library mask keeps two corners
    with pytest.raises(FormatError, match=r"filter 3, input channel 2"):
        PatternWeight.from_dense(weight, library)


def test_dense_weights_are_not_patterns():
    weight = np.random.default_rng(5).standard_normal((4, 3, 3, 3))
    with pytest.raises(FormatError, match=r"keeps 9 of 9 weights"):
        PatternWeight.from_dense(weight)


def test_unstructured_sparsity_is_rejected():
    rng = np.random.default_rng(6)
    weight = rng.standard_normal((32, 32, 3, 3)) * (rng.random((32, 32, 3, 3)) < 0.3)
    with pytest.raises(FormatError):
        PatternWeight.from_dense(weight)


@pytest.mark.parametrize(
    "weight, message",
    [
        (np.ones((4, 4, 5, 5)), r"\[K, C, 3, 3\]"),
        (np.ones((4, 3, 3)), r"\[K, C, 3, 3\]"),
        (np.full((2, 2, 3, 3), np.nan), "non-finite"),
        (np.zeros((2, 2, 3, 3)), "every kernel is zero"),
    ],
)
def test_bad_weights(weight, message):
    with pytest.raises(FormatError, match=message):
        PatternWeight.from_dense(weight)


@pytest.mark.parametrize(
    "library, message",
    [
        (np.ones((2, 3, 3)), "keeps 9 of 9"),
        (np.stack([pattern_library(1, 4)[0], pattern_library(1, 5)[0]]), "same number"),
        (np.stack([pattern_library(1, 4)[0]] * 2), "repeats"),
        (np.full((1, 3, 3), 2), "0/1"),
        (np.ones((2, 9)), r"\[P, 3, 3\]"),
    ],
)
def test_bad_library(library, message):
    with pytest.raises(FormatError, match=message):
        PatternWeight.from_dense(np.zeros((1, 1, 3, 3)), library)


def test_all_zero_weight_with_library_is_empty():
    fmt = PatternWeight.from_dense(np.zeros((3, 2, 3, 3), np.float32), pattern_library(4, 4))
    assert fmt.density == 0
    np.testing.assert_array_equal(fmt.conv2d(np.ones((1, 2, 4, 4))), np.zeros((1, 3, 4, 4)))


def test_validate_catches_corruption():
    library = pattern_library(4, 4)
    fmt = PatternWeight.from_dense(pattern_pruned(np.random.default_rng(7), 4, 4, library, 1.0), library)
    fmt.channels[0] = 99
    with pytest.raises(FormatError, match="input channel outside"):
        fmt.validate()

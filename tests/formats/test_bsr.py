import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_sparse.formats import BSRWeight, FormatError
from tvm_sparse.formats.synthetic import block_sparse


@st.composite
def bsr_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    block = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    rows, cols = draw(st.integers(1, 6)) * block[0], draw(st.integers(1, 6)) * block[1]
    shape = draw(st.sampled_from([(rows, cols), (rows, cols, 1, 1)]))
    return rng, block, block_sparse(rng, shape, block, draw(st.floats(0.0, 1.0)))


@settings(max_examples=50, deadline=None)
@given(bsr_cases())
def test_matches_scipy_bsr(case):
    rng, block, weight = case
    fmt = BSRWeight.from_dense(weight, block)
    twin = scipy.sparse.bsr_matrix(weight.reshape(weight.shape[:2]), blocksize=block)
    np.testing.assert_array_equal(fmt.indptr, twin.indptr)
    np.testing.assert_array_equal(fmt.indices, twin.indices)
    np.testing.assert_array_equal(fmt.values, twin.data)
    np.testing.assert_array_equal(fmt.to_dense(), weight)
    rhs = rng.standard_normal((weight.shape[1], 5))
    np.testing.assert_allclose(fmt.matmul(rhs), twin @ rhs, rtol=1e-6, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 20), st.integers(1, 20), st.integers(1, 9), st.integers(1, 9))
def test_padding_when_blocks_do_not_divide(seed, rows, cols, bh, bw):
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((rows, cols)) * (rng.random((rows, cols)) < 0.3)
    fmt = BSRWeight.from_dense(weight, (bh, bw))
    np.testing.assert_array_equal(fmt.to_dense(), weight)
    assert fmt.density * weight.size >= np.count_nonzero(weight)
    x = rng.standard_normal((3, cols))
    bias = rng.standard_normal(rows)
    np.testing.assert_allclose(fmt.linear(x, bias), x @ weight.T + bias, rtol=1e-6, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(bsr_cases(), st.integers(1, 2), st.integers(0, 1))
def test_reference_conv_matches_dense_twin(reference_conv_matches_dense_twin, case, stride, padding):
    rng, block, weight = case
    weight4 = weight.reshape(weight.shape[:2] + (1, 1))
    x = rng.standard_normal((2, weight.shape[1], 5, 6))
    reference_conv_matches_dense_twin(BSRWeight.from_dense(weight4, block), weight4, x, stride, padding, tolerance=1e-6)


def test_density_counts_whole_blocks():
    weight = np.zeros((16, 8))
    weight[0, 0] = 1.0
    assert BSRWeight.from_dense(weight, (8, 4)).density == pytest.approx(32 / 128)


@pytest.mark.parametrize(
    "weight, message",
    [(np.ones((4, 4, 3, 3)), "BlockPunchedWeight or PatternWeight"), (np.ones(4), r"\[K, C\]"), (np.full((4, 4), np.nan), "non-finite")],
)
def test_bad_input(weight, message):
    with pytest.raises(FormatError, match=message):
        BSRWeight.from_dense(weight, (2, 2))


def test_validate_catches_corruption():
    fmt = BSRWeight.from_dense(np.ones((8, 8)), (4, 4))
    fmt.indices[1] = 0
    with pytest.raises(FormatError, match="strictly ascending"):
        fmt.validate()

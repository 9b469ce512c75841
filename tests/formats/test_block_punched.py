import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_sparse.formats import BlockPunchedWeight, FormatError
from tvm_sparse.formats.synthetic import block_punched


@st.composite
def block_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    kernel = draw(st.sampled_from([1, 3, 5, 7]))
    shape = (draw(st.integers(1, 20)), draw(st.integers(1, 10)), kernel, kernel)
    block = (draw(st.integers(1, 9)), draw(st.integers(1, 5)))
    return rng, block, block_punched(rng, shape, block, draw(st.floats(0.0, 1.0)))


@settings(max_examples=50, deadline=None)
@given(block_cases())
def test_round_trip_and_scipy_twin(case):
    _, block, weight = case
    fmt = BlockPunchedWeight.from_dense(weight, block)
    np.testing.assert_array_equal(fmt.to_dense(), weight)
    twin = scipy.sparse.csr_matrix(weight.reshape(weight.shape[0], -1))
    assert fmt.density == pytest.approx(twin.nnz / weight.size)
    # every stored column of a block is non-zero in every real filter of the block
    bk = block[0]
    for kb in range(fmt.grid[0]):
        rows = slice(kb * bk, min((kb + 1) * bk, weight.shape[0]))
        for cb in range(fmt.grid[1]):
            columns, tile = fmt.tile(kb, cb)
            block_twin = twin[rows][:, columns].toarray()
            np.testing.assert_array_equal(tile[: block_twin.shape[0]], block_twin)
            assert np.all(block_twin != 0)


@settings(max_examples=30, deadline=None)
@given(block_cases())
def test_column_positions_address_the_dense_weight(case):
    """Each stored column's (channel, row, col) holds its values in the dense weight, in the rows of its filter block."""
    _, block, weight = case
    fmt = BlockPunchedWeight.from_dense(weight, block)
    channel, row, col = fmt.column_positions()
    bk, n_cb = block[0], fmt.grid[1]
    for kb in range(fmt.grid[0]):
        lo, hi = fmt.block_ptr[kb * n_cb], fmt.block_ptr[(kb + 1) * n_cb]
        filters = slice(kb * bk, min((kb + 1) * bk, weight.shape[0]))
        stored = weight[filters][:, channel[lo:hi], row[lo:hi], col[lo:hi]]
        np.testing.assert_array_equal(stored, fmt.values[: stored.shape[0], lo:hi])


@settings(max_examples=40, deadline=None)
@given(block_cases(), st.tuples(st.integers(1, 2), st.integers(1, 2)), st.tuples(*[st.integers(0, 3)] * 4))
def test_reference_conv_matches_dense_twin(reference_conv_matches_dense_twin, case, stride, padding):
    rng, block, weight = case
    kernel = weight.shape[2]
    x = rng.standard_normal((2, weight.shape[1], kernel + int(rng.integers(0, 5)), kernel + int(rng.integers(0, 6))))
    bias = rng.standard_normal(weight.shape[0])
    reference_conv_matches_dense_twin(BlockPunchedWeight.from_dense(weight, block), weight, x, stride, padding, bias)


def test_linear_weight_is_one_by_one():
    rng = np.random.default_rng(0)
    weight = block_punched(rng, (16, 12, 1, 1), (8, 4), 0.5)[:, :, 0, 0]
    fmt = BlockPunchedWeight.from_dense(weight, (8, 4))
    assert fmt.shape == (16, 12, 1, 1)
    np.testing.assert_array_equal(fmt.to_dense()[:, :, 0, 0], weight)


def test_partial_column_names_block_and_position():
    weight = block_punched(np.random.default_rng(1), (16, 8, 3, 3), (8, 4), 1.0)
    weight[10, 5, 2, 1] = 0.0
    with pytest.raises(FormatError, match=r"filters 8..15, channels 4..7.*channel 5, kernel position \(2, 1\).*\[10\]"):
        BlockPunchedWeight.from_dense(weight, (8, 4))


def test_unstructured_sparsity_is_rejected():
    rng = np.random.default_rng(2)
    weight = rng.standard_normal((16, 16, 3, 3)) * (rng.random((16, 16, 3, 3)) < 0.5)
    with pytest.raises(FormatError, match="keeps or prunes a column in all its filters"):
        BlockPunchedWeight.from_dense(weight, (8, 4))


@pytest.mark.parametrize(
    "weight, block, message",
    [
        (np.ones((4, 4, 3)), (8, 4), r"\[K, C, R, S\]"),
        (np.ones((4, 4, 3, 3)), (0, 4), "positive"),
        (np.ones((4, 4, 3, 3)), (8,), "pair"),
        (np.full((4, 4, 1, 1), np.inf), (8, 4), "non-finite"),
    ],
)
def test_bad_input(weight, block, message):
    with pytest.raises(FormatError, match=message):
        BlockPunchedWeight.from_dense(weight, block)


def test_validate_catches_corruption():
    fmt = BlockPunchedWeight.from_dense(block_punched(np.random.default_rng(3), (8, 8, 3, 3), (8, 4), 0.5), (8, 4))
    fmt.columns[0] = 40  # belongs to the second channel block
    with pytest.raises(FormatError, match=r"block \(0, 0\) stores a column outside"):
        fmt.validate()


def _block_of_stored_column(fmt, index):
    return divmod(int(np.searchsorted(fmt.block_ptr, index, side="right")) - 1, fmt.grid[1])


@pytest.mark.parametrize("corruption, message", [
    ("outside", "stores a column outside its channels' columns"),
    ("repeated", "columns must be strictly ascending"),
    ("past_rows", r"stores non-zero values in rows past filter 11"),
])
def test_validate_names_the_first_broken_block(corruption, message):
    """Corrupt two stored columns of different blocks: the error names the earlier block and what broke."""
    fmt = BlockPunchedWeight.from_dense(block_punched(np.random.default_rng(4), (12, 12, 3, 3), (8, 4), 0.3), (8, 4))
    last_row_blocks = np.flatnonzero(np.diff(fmt.block_ptr)[fmt.grid[1]:] >= 2) + fmt.grid[1]
    second, first = (int(fmt.block_ptr[b]) + 1 for b in last_row_blocks[-1:-3:-1])
    for index in (second, first):  # the later block first: the message must not name the last one written
        if corruption == "outside":
            fmt.columns[index] = fmt.shape[1] * 9
        elif corruption == "repeated":
            fmt.columns[index] = fmt.columns[index - 1]
        else:
            fmt.values[-1, index] = 1.0
    kb, cb = _block_of_stored_column(fmt, first)
    with pytest.raises(FormatError, match=rf"block \({kb}, {cb}\):? {message}"):
        fmt.validate()

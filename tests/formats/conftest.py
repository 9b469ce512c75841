"""The numpy twin that the formats' reference convolutions are checked against."""

import numpy as np
import pytest


def _dense_conv2d(x, weight, stride=1, padding=0):
    """Dense NCHW convolution by sliding windows; padding is an int or (top, left, bottom, right)."""
    top, left, bottom, right = (padding,) * 4 if np.isscalar(padding) else padding
    stride_h, stride_w = (stride, stride) if np.isscalar(stride) else stride
    x_padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right))).astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(x_padded, weight.shape[2:], axis=(2, 3))
    windows = windows[:, :, ::stride_h, ::stride_w]
    return np.einsum("nchwrs,kcrs->nkhw", windows, weight.astype(np.float64))


def _reference_conv_matches_dense_twin(fmt, weight, x, stride, padding, bias=None, tolerance=1e-5):
    """Assert that the format's reference convolution ``fmt.conv2d`` gives the dense twin's output for ``weight``."""
    expected = _dense_conv2d(x, weight, stride, padding)
    if bias is not None:
        expected = expected + bias[None, :, None, None]
    np.testing.assert_allclose(fmt.conv2d(x, bias, stride, padding), expected, rtol=tolerance, atol=tolerance)


@pytest.fixture(scope="session")
def reference_conv_matches_dense_twin():
    """``reference_conv_matches_dense_twin(fmt, weight, x, stride, padding, bias=None, tolerance=1e-5)``: assert it."""
    return _reference_conv_matches_dense_twin

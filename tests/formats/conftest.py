"""Numpy twins that the formats' reference convolutions are checked against."""

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


@pytest.fixture(scope="session")
def dense_conv2d():
    """The dense twin convolution ``(x, weight, stride, padding) -> [N, K, out_h, out_w]``."""
    return _dense_conv2d

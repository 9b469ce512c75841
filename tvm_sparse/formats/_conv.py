"""Shape helpers shared by the formats, and their slow reference convolution (numpy only)."""

import numpy as np

from .errors import FormatError


def normalize_padding(padding):
    """Return padding as ``(top, left, bottom, right)``.

    Parameters
    ----------
    padding : int or tuple of int
        One value for all sides, ``(pad_h, pad_w)``, or ``(top, left, bottom, right)``.
    """
    if np.isscalar(padding):
        pads = (int(padding),) * 4
    else:
        pads = tuple(int(p) for p in padding)
        if len(pads) == 2:
            pads = (pads[0], pads[1], pads[0], pads[1])
    if len(pads) != 4 or min(pads) < 0:
        raise ValueError(f"padding must be an int, (pad_h, pad_w) or (top, left, bottom, right) >= 0, got {padding!r}")
    return pads


def normalize_stride(stride):
    """Return stride as ``(stride_h, stride_w)``."""
    strides = (int(stride),) * 2 if np.isscalar(stride) else tuple(int(s) for s in stride)
    if len(strides) != 2 or min(strides) < 1:
        raise ValueError(f"stride must be an int or (stride_h, stride_w) >= 1, got {stride!r}")
    return strides


def pad_input(x, channels, kernel_size, stride, padding):
    """Check an NCHW input, pad it, and compute the output size.

    Parameters
    ----------
    x : numpy.ndarray
        Input ``[N, C, H, W]``.
    channels : int
        The number of input channels the weight expects.
    kernel_size : tuple of int
        ``(R, S)``.
    stride, padding
        As accepted by :func:`normalize_stride` and :func:`normalize_padding`.

    Returns
    -------
    tuple
        ``(x_padded, (stride_h, stride_w), (out_h, out_w))``.
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] != channels:
        raise FormatError(f"input must be [N, {channels}, H, W], got shape {x.shape}")
    top, left, bottom, right = normalize_padding(padding)
    stride_h, stride_w = normalize_stride(stride)
    x_padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    out_h = (x_padded.shape[2] - kernel_size[0]) // stride_h + 1
    out_w = (x_padded.shape[3] - kernel_size[1]) // stride_w + 1
    if out_h < 1 or out_w < 1:
        raise FormatError(f"input {x.shape} with padding {padding} is smaller than the kernel {kernel_size}")
    return x_padded, (stride_h, stride_w), (out_h, out_w)


def window(x_padded, r, s, strides, out_size):
    """The input values that kernel tap ``(r, s)`` multiplies, ``[N, C, out_h, out_w]``."""
    (stride_h, stride_w), (out_h, out_w) = strides, out_size
    return x_padded[:, :, r : r + stride_h * (out_h - 1) + 1 : stride_h, s : s + stride_w * (out_w - 1) + 1 : stride_w]


def add_bias(out, bias):
    """Add a per-output-channel bias (``None``: nothing) to an NCHW output in place."""
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (out.shape[1],):
            raise FormatError(f"bias must have shape ({out.shape[1]},), got {bias.shape}")
        out += bias.reshape(1, -1, 1, 1).astype(out.dtype)
    return out


class ReferenceConv:
    """The slow reference convolution of a sparse format, straight from its stored weights (no densify).

    A format has ``shape`` (``(K, C, R, S)``; ``(K, C)`` is a 1x1 kernel) and ``default_padding``,
    and implements ``_accumulate(x_padded, strides, out_size)``: the output ``[N, K, out_h, out_w]``
    before the bias, from the padded input (:func:`pad_input`).
    """

    default_padding = 0

    def conv2d(self, x, bias=None, stride=1, padding=None):
        """Slow reference convolution, as ``torch.nn.functional.conv2d`` with the dense weight.

        Parameters
        ----------
        x : numpy.ndarray
            Input ``[N, C, H, W]``.
        bias : numpy.ndarray or None
            ``[K]``.
        stride : int or (int, int)
        padding : int, (pad_h, pad_w) or (top, left, bottom, right), optional
            Default: the format's ``default_padding``.

        Returns
        -------
        numpy.ndarray
            ``[N, K, out_h, out_w]``.
        """
        padding = self.default_padding if padding is None else padding
        x_padded, strides, out_size = pad_input(x, self.shape[1], tuple(self.shape[2:]) or (1, 1), stride, padding)
        return add_bias(self._accumulate(x_padded, strides, out_size), bias)


def check_finite(weight, what):
    """Raise FormatError if ``weight`` holds NaN or infinity."""
    if not np.all(np.isfinite(weight)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(weight))[0])
        raise FormatError(f"{what} holds a non-finite value at index {bad}")


def check_block(block, name="block"):
    """Return a ``(rows, cols)`` block shape of positive ints."""
    try:
        rows, cols = (int(b) for b in block)
    except (TypeError, ValueError):
        raise FormatError(f"{name} must be a pair of positive ints, got {block!r}") from None
    if rows < 1 or cols < 1:
        raise FormatError(f"{name} must be a pair of positive ints, got {block!r}")
    return rows, cols

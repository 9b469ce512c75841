"""The shapes of a float32 NCHW convolution, as every sparse kernel (CPU and OpenCL) declares them."""

from dataclasses import dataclass

#: The sparse kernels compute in float32.
DTYPE = "float32"


@dataclass(frozen=True)
class ConvGeometry:
    """Shapes of a 2-D convolution in NCHW layout.

    ``padding`` is ``(top, left, bottom, right)``; ``stride`` is ``(stride_h, stride_w)``.
    """

    batch: int
    channels: int
    height: int
    width: int
    filters: int
    kernel: tuple
    stride: tuple
    padding: tuple

    @property
    def out_height(self):
        return (self.height + self.padding[0] + self.padding[2] - self.kernel[0]) // self.stride[0] + 1

    @property
    def out_width(self):
        return (self.width + self.padding[1] + self.padding[3] - self.kernel[1]) // self.stride[1] + 1

    @property
    def data_shape(self):
        return (self.batch, self.channels, self.height, self.width)

    @property
    def out_shape(self):
        return (self.batch, self.filters, self.out_height, self.out_width)


def make_geometry(data_shape, weight_shape, stride=1, padding=0):
    """A :class:`ConvGeometry` from an NCHW data shape, a ``[K, C, R, S]`` weight shape and options.

    ``stride`` is an int or a pair; ``padding`` an int, ``(pad_h, pad_w)`` or ``(top, left, bottom, right)``.
    """
    n, c, h, w = (int(d) for d in data_shape)
    k, wc, r, s = (int(d) for d in weight_shape)
    if wc != c:
        raise ValueError(f"the data has {c} channels but the weight expects {wc}")
    stride = (int(stride),) * 2 if isinstance(stride, int) else tuple(int(x) for x in stride)
    if isinstance(padding, int):
        padding = (padding,) * 4
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        padding = padding * 2
    geometry = ConvGeometry(n, c, h, w, k, (r, s), stride, padding)
    if min(stride) < 1 or min(padding) < 0 or geometry.out_height < 1 or geometry.out_width < 1:
        raise ValueError(f"no output for data {data_shape}, kernel {(r, s)}, stride {stride}, padding {padding}")
    return geometry


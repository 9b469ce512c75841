"""The pixels a strided 1x1 convolution reads, copied into a map of their own, for CPUs.

A 1x1 convolution with stride ``s`` and no padding reads every ``s``-th row and column of its
input. Run as it is, each register tile gathers its input column from a map ``s * s`` times larger
than the pixels it uses, from beyond the L1 cache, and its pixels are not contiguous;
``relay_passes.strided_pointwise`` instead copies those pixels once with :func:`subsample_func`
and runs the stride-1 convolution on the copy, whose contiguous rows the pointwise kernels and
their panels take (``schedules.dense.pointwise``). The sparse 1x1 kernels copy the pixels they
read in the same way (``schedules.sparse_cpu``).

The copy runs its channels in parallel and leaves each row's stride-``s`` loads to LLVM's loop
vectorizer, which loads whole vectors and deinterleaves them; vectorized by the schedule, every
load would be a gather of single elements.
"""

import math

from tvm import s_tir, te

from .blocks import MIN_PARALLEL_WORK, find_block, int64_extents

#: Name of the copy's block.
BLOCK_NAME = "subsample"


def subsampled_shape(data_shape, strides):
    """The NCHW shape of every ``strides``-th row and column of a map of ``data_shape`` (the first of each kept)."""
    batch, channels, height, width = data_shape
    stride_y, stride_x = strides
    return batch, channels, -(-height // stride_y), -(-width // stride_x)


def subsample_func(data_shape, strides, dtype="float32"):
    """The scheduled PrimFunc ``(data, output)`` that copies every ``strides``-th row and column of ``data``.

    Parameters
    ----------
    data_shape : tuple of int
        NCHW shape of the input.
    strides : tuple of int
        ``(stride_y, stride_x)``, each at least 1.
    dtype : str

    Returns
    -------
    tvm.tirx.PrimFunc
        Output shape :func:`subsampled_shape`; marked ``tirx.is_scheduled``.
    """
    if len(strides) != 2 or min(strides) < 1:
        raise ValueError(f"strides must be two integers of at least 1, got {strides}")
    stride_y, stride_x = strides
    data = te.placeholder(int64_extents(data_shape), dtype, name="data")
    out = te.compute(int64_extents(subsampled_shape(data_shape, strides)),
                     lambda n, c, y, x: data[n, c, y * stride_y, x * stride_x], name=BLOCK_NAME)
    sch = s_tir.Schedule(te.create_prim_func([data, out]))
    block = find_block(sch, (BLOCK_NAME,))
    images, channels, _, _ = sch.get_loops(block)
    if math.prod(subsampled_shape(data_shape, strides)) >= MIN_PARALLEL_WORK:
        sch.parallel(sch.fuse(images, channels))
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)

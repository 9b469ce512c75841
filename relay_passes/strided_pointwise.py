"""Run dense strided 1x1 convolutions on a copy of the pixels they read.

For every ``relax.nn.conv2d`` left after the sparse passes that is 1x1, unpadded, ungrouped and
strided (a ResNet's downsampling shortcut), :class:`SubsampleStridedPointwise` copies every
``s``-th row and column of the input with ``schedules.dense.subsample.subsample_func`` and
convolves the copy with stride 1, which gives the layer the pointwise kernels of stride-1 layers
(contiguous rows, panels where the target's profile sets them) instead of tiles that gather their
input from the whole map. The copy is a kernel of its own, complete (``tirx.is_scheduled``) and
opaque to ``FuseOps``; the convolution keeps its epilogue (bias, residual add, activation).
"""

import logging

from tvm import relax

from relay_passes.call_rewrites import call_rewrite_pass
from relay_passes.layer_chains import is_nchw_conv2d, static_shape
from schedules.dense.subsample import subsample_func, subsampled_shape
from schedules.target_info import target_family

logger = logging.getLogger(__name__)

#: ``op_pattern`` of an operator that ``FuseOps`` merges with nothing (TVM's kOpaque).
OPAQUE = 8

#: Name of the copy's PrimFunc in the module.
FUNC_NAME = "subsample"


def _subsample_and_convolve(builder, call, target):
    """The stride-1 convolution of the copied pixels that replaces ``call``, or None where it stays as it is."""
    strides = subsample_strides(call, target)
    if strides is None:
        return None
    data, dtype = call.args[0], call.args[0].ty.dtype
    data_shape = static_shape(data)
    func = subsample_func(data_shape, strides, str(dtype))
    callee = builder.add_func(func.without_attr("global_symbol").with_attr("op_pattern", OPAQUE), FUNC_NAME)
    subsampled = builder.emit(relax.call_tir(callee, relax.Tuple([data]),
                                             out_ty=relax.TensorType(subsampled_shape(data_shape, strides), dtype)))
    logger.info("conv2d %s on %s, stride %s: stride 1 on the subsampled input", static_shape(call.args[1]),
                data_shape, strides)
    return relax.op.nn.conv2d(subsampled, call.args[1], strides=1, padding=0, dilation=1, groups=1,
                              data_layout="NCHW", kernel_layout="OIHW", out_layout="NCHW",
                              out_dtype=call.attrs.out_dtype)


SubsampleStridedPointwise = call_rewrite_pass(
    "tvm_sparse.SubsampleStridedPointwise", _subsample_and_convolve,
    """Convolve a copy of the pixels that each dense strided 1x1 convolution reads, with stride 1 (CPU targets).

    Parameters
    ----------
    target : tvm.target.Target
    """)


def subsample_strides(call, target):
    """The ``(stride_y, stride_x)`` of a ``relax.nn.conv2d`` call that :class:`SubsampleStridedPointwise` rewrites, or None.

    On a CPU target, a 4-D NCHW / OIHW convolution of static shape, 1x1, groups = 1, no padding,
    and a stride above 1 along some axis.
    """
    if target_family(target) == "gpu" or not is_nchw_conv2d(call):
        return None
    attrs, weight_shape = call.attrs, static_shape(call.args[1])
    if (weight_shape is None or len(weight_shape) != 4 or tuple(weight_shape[2:]) != (1, 1)
            or any(int(p) for p in attrs.padding)):
        return None
    strides = tuple(int(s) for s in attrs.strides)
    return strides if max(strides) > 1 else None

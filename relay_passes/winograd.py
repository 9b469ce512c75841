"""Rewrite dense 3x3 stride-1 convolutions with constant weights to Winograd's F(m x m, 3 x 3).

For every ``relax.nn.conv2d`` left after the sparse passes whose shape
``schedules.dense.winograd.winograd_tile_size`` takes on the target (its profile says where
Winograd pays), :class:`WinogradConvolutions` transforms the constant weight at compile time
(``U = G g G^T``) and calls the Winograd PrimFunc instead. The PrimFunc is marked as a
convolution for ``FuseOps`` (``op_pattern`` kOutEWiseFusable), so the bias, residual add and
activation after it are fused into it as they are into a direct convolution, and
``schedules.dense.winograd.WinogradConv2d`` schedules the fused function.
"""

import logging

import numpy as np
from tvm import relax

from relay_passes.call_rewrites import call_rewrite_pass
from relay_passes.layer_chains import is_const, is_nchw_conv2d, static_shape
from schedules.dense.winograd import FUNC_NAME, transform_weight, winograd_conv2d, winograd_tile_size
from schedules.target_info import vector_lanes

logger = logging.getLogger(__name__)

#: ``op_pattern`` of an operator whose element-wise consumers ``FuseOps`` fuses into it (TVM's kOutEWiseFusable).
OUT_ELEMWISE_FUSABLE = 4


def _call_winograd(builder, call, target):
    """The Winograd ``call_tir`` that replaces ``call``, or None where it stays a direct convolution."""
    tile = winograd_tile(call, target)
    if tile is None:
        return None
    data_shape, out_shape = static_shape(call.args[0]), static_shape(call)
    weight = call.args[1].value.numpy()
    func = winograd_conv2d(data_shape, weight.shape[0], tile, vector_lanes(target))
    func = func.without_attr("global_symbol").with_attr("op_pattern", OUT_ELEMWISE_FUSABLE)
    callee = builder.add_func(func, FUNC_NAME)
    args = relax.Tuple([call.args[0], relax.const(transform_weight(weight, tile))])
    logger.info("conv2d %s on %s: Winograd F(%dx%d, 3x3)", weight.shape, data_shape, tile, tile)
    return relax.call_tir(callee, args, out_ty=relax.TensorType(out_shape, "float32"))


WinogradConvolutions = call_rewrite_pass(
    "tvm_sparse.WinogradConvolutions", _call_winograd,
    """Call Winograd PrimFuncs for the dense 3x3 stride-1 convolutions the target's profile gives them.

    Parameters
    ----------
    target : tvm.target.Target
    """)


def winograd_tile(call, target):
    """The Winograd output tile of a ``relax.nn.conv2d`` call on ``target``, or None when it stays a direct convolution.

    A float32 NCHW convolution with a finite constant weight, of a shape that
    ``schedules.dense.winograd.winograd_tile_size`` takes on ``target``.
    """
    if not is_nchw_conv2d(call) or not is_const(call.args[1]):
        return None
    attrs = call.attrs
    data_shape, weight_shape, out_shape = (static_shape(e) for e in (call.args[0], call.args[1], call))
    if out_shape is None:
        return None
    if any(str(e.ty.dtype) != "float32" for e in (call.args[0], call.args[1], call)):
        return None
    tile = winograd_tile_size(target, data_shape, weight_shape, [int(s) for s in attrs.strides],
                              [int(p) for p in attrs.padding], [int(d) for d in attrs.dilation])
    if tile is not None and not np.isfinite(call.args[1].value.numpy()).all():
        return None  # the transformed weight would turn an infinity into NaN
    return tile

"""Legalizations of ReLU, clip and max pooling that propagate NaN as PyTorch does.

TVM legalizes ``relu`` as ``max(x, 0)``, ``clip`` as ``min(max(x, lo), hi)`` and max pooling
as a ``max`` reduction; LLVM lowers a float ``max`` to an operation that returns the other
operand when one is NaN, so ``relu(nan)`` gives 0 where PyTorch gives NaN, and a NaN in a
pooling window may or may not survive depending on its position. The computations here use
comparisons that keep a NaN operand (``x < 0 ? 0 : x``), which is what PyTorch does.
"""

from tvm import te, tirx, topi
from tvm.relax.transform import LegalizeOps


def _select_below(value, bound):
    """``bound`` where ``value < bound``, else ``value`` (NaN stays NaN)."""
    return tirx.Select(value < bound, bound, value)


def _select_above(value, bound):
    """``bound`` where ``value > bound``, else ``value`` (NaN stays NaN)."""
    return tirx.Select(value > bound, bound, value)


def _relu(bb, call):
    def compute(x):
        zero = tirx.const(0.0, x.dtype)
        return te.compute(x.shape, lambda *index: _select_below(x(*index), zero), name="relu")

    return bb.call_te(compute, call.args[0], primfunc_name_hint="relu")


def _clip(bb, call):
    x, low, high = call.args

    def compute(data):
        lo, hi = (tirx.const(float(bound.value), data.dtype) for bound in (low, high))
        return te.compute(data.shape, lambda *index: _select_above(_select_below(data(*index), lo), hi), name="clip")

    return bb.call_te(compute, x, primfunc_name_hint="clip")


def _nan_max(a, b):
    return tirx.Select(tirx.isnan(a) | (a > b), a, b)


def _minus_infinity(dtype):
    return tirx.const(float("-inf"), dtype)


# identity -inf, not the lowest finite value: a window of -inf gives -inf, as in PyTorch
_NAN_MAX = te.comm_reducer(_nan_max, _minus_infinity, name="nan_max")


def _max_pool2d(bb, call):
    attrs = call.attrs
    if str(attrs.layout) != "NCHW" or str(attrs.out_layout) != "NCHW":
        return call  # left to TVM's own legalization
    kernel_h, kernel_w = (int(k) for k in attrs.pool_size)
    stride_h, stride_w = (int(s) for s in attrs.strides)
    dilation_h, dilation_w = (int(d) for d in attrs.dilation)
    top, left, bottom, right = (int(p) for p in attrs.padding)
    out_h, out_w = (int(d) for d in call.ty.shape.values[2:])

    def compute(data):
        _, _, height, width = (int(d) for d in data.shape)
        # ceil_mode windows may reach past the bottom/right padding: pad them too (with -inf)
        bottom_needed = max(bottom, (out_h - 1) * stride_h + (kernel_h - 1) * dilation_h + 1 - height - top)
        right_needed = max(right, (out_w - 1) * stride_w + (kernel_w - 1) * dilation_w + 1 - width - left)
        padded = topi.nn.pad(data, [0, 0, top, left], [0, 0, bottom_needed, right_needed],
                             pad_value=_minus_infinity(data.dtype), name="pad")
        rh = te.reduce_axis((0, kernel_h), name="rh")
        rw = te.reduce_axis((0, kernel_w), name="rw")
        return te.compute(
            (data.shape[0], data.shape[1], out_h, out_w),
            lambda n, c, h, w: _NAN_MAX(padded[n, c, h * stride_h + rh * dilation_h, w * stride_w + rw * dilation_w],
                                        axis=[rh, rw]),
            name="max_pool2d")

    return bb.call_te(compute, call.args[0], primfunc_name_hint="max_pool2d")


#: ``LegalizeOps`` overrides for the operators whose default legalization drops NaN.
NAN_PROPAGATING_LEGALIZATIONS = {
    "relax.nn.relu": _relu,
    "relax.clip": _clip,
    "relax.nn.max_pool2d": _max_pool2d,
}


def legalize_propagating_nan():
    """``LegalizeOps`` with :data:`NAN_PROPAGATING_LEGALIZATIONS` (the other operators as TVM legalizes them)."""
    return LegalizeOps(customize_legalize_map=NAN_PROPAGATING_LEGALIZATIONS)

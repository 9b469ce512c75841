"""Before/Expected tests of the ``schedule`` phase's weight packing (``relay_passes.schedule_dense``).

``PackDenseWeights`` gives a dense convolution's PrimFunc the weight layout its register-tiled
kernel reads, ``[K, C, R, S] -> [K/kb, C, R, S, kb]`` (``kb`` output channels in the vector lanes:
4 on NEON), and passes the packed constant at the call site; a weight that is not a constant
at every call keeps its layout. ``ApplyTunedSchedules`` does nothing without a database.
"""

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

import tvm_sparse
from relay_passes.schedule_dense import ApplyTunedSchedules, PackDenseWeights

#: A target whose vector width (4 float32 lanes) fixes the channel block, whatever this machine is.
NEON = "llvm -mtriple=aarch64-linux-gnu -mattr=+neon"


@I.ir_module
class Conv2d:
    """A 3x3 convolution of 8 filters."""

    @R.function
    def main(x: R.Tensor((1, 2, 4, 4), "float32"), w: R.Tensor((8, 2, 3, 3), "float32")):
        with R.dataflow():
            y = R.nn.conv2d(x, w, padding=1)
            R.output(y)
        return y


#: The convolution as ``LegalizeOps`` leaves it: a PrimFunc ``conv2d`` reading ``w[k, c, r, s]``.
Before = relax.transform.LegalizeOps()(Conv2d)


@I.ir_module
class Expected:
    """The same convolution reading ``w[k // 4, c, r, s, k % 4]``, under a new name (its signature changed)."""

    @T.prim_func(private=True, s_tir=True)
    def conv2d1(x: T.Buffer((T.int64(1), T.int64(2), T.int64(4), T.int64(4)), "float32"),
                w: T.Buffer((T.int64(2), T.int64(2), T.int64(3), T.int64(3), T.int64(4)), "float32"),
                conv2d_nchw: T.Buffer((T.int64(1), T.int64(8), T.int64(4), T.int64(4)), "float32")):
        T.func_attr({"tirx.noalias": True})
        pad_temp = T.sblock_alloc_buffer((T.int64(1), T.int64(2), T.int64(6), T.int64(6)))
        for i0, i1, i2, i3 in T.grid(T.int64(1), T.int64(2), T.int64(6), T.int64(6)):
            with T.sblock("pad_temp"):
                v_i0, v_i1, v_i2, v_i3 = T.axis.remap("SSSS", [i0, i1, i2, i3])
                T.reads(x[v_i0, v_i1, v_i2 - T.int64(1), v_i3 - T.int64(1)])
                T.writes(pad_temp[v_i0, v_i1, v_i2, v_i3])
                pad_temp[v_i0, v_i1, v_i2, v_i3] = T.if_then_else(
                    T.int64(1) <= v_i2 and v_i2 < T.int64(5) and T.int64(1) <= v_i3 and v_i3 < T.int64(5),
                    x[v_i0, v_i1, v_i2 - T.int64(1), v_i3 - T.int64(1)], T.float32(0.0))
        for nn, ff, yy, xx, rc, ry, rx in T.grid(T.int64(1), T.int64(8), T.int64(4), T.int64(4), T.int64(2),
                                                T.int64(3), T.int64(3)):
            with T.sblock("conv2d_nchw"):
                v_nn, v_ff, v_yy, v_xx, v_rc, v_ry, v_rx = T.axis.remap("SSSSRRR", [nn, ff, yy, xx, rc, ry, rx])
                T.reads(pad_temp[v_nn, v_rc, v_yy + v_ry, v_xx + v_rx],
                        w[v_ff // T.int64(4), v_rc, v_ry, v_rx, v_ff % T.int64(4)])
                T.writes(conv2d_nchw[v_nn, v_ff, v_yy, v_xx])
                with T.init():
                    conv2d_nchw[v_nn, v_ff, v_yy, v_xx] = T.float32(0.0)
                conv2d_nchw[v_nn, v_ff, v_yy, v_xx] = (conv2d_nchw[v_nn, v_ff, v_yy, v_xx]
                                                       + pad_temp[v_nn, v_rc, v_yy + v_ry, v_xx + v_rx]
                                                       * w[v_ff // T.int64(4), v_rc, v_ry, v_rx, v_ff % T.int64(4)])

    @R.function
    def main(x: R.Tensor((1, 2, 4, 4), "float32"), packed: R.Tensor((2, 2, 3, 3, 4), "float32")):
        cls = Expected
        with R.dataflow():
            y = R.call_tir(cls.conv2d1, (x, packed), out_ty=R.Tensor((1, 8, 4, 4), "float32"))
            R.output(y)
        return y


def _bind(mod, name, array):
    return relax.transform.BindParams("main", {name: tvm.runtime.tensor(array)})(mod)


def _pack(mod):
    target = tvm_sparse.parse_target(NEON)
    with target:
        return PackDenseWeights(target)(mod)


def test_a_constant_weight_is_packed_with_its_function():
    weight = np.arange(8 * 2 * 3 * 3, dtype="float32").reshape(8, 2, 3, 3)
    packed = np.empty((2, 2, 3, 3, 4), "float32")
    for k, c, r, s in np.ndindex(weight.shape):
        packed[k // 4, c, r, s, k % 4] = weight[k, c, r, s]
    tvm.ir.assert_structural_equal(_pack(_bind(Before, "w", weight)), _bind(Expected, "packed", packed))


def test_a_weight_that_is_not_constant_keeps_its_layout():
    tvm.ir.assert_structural_equal(_pack(Before), Before)


def test_without_a_tuning_database_the_tuned_schedules_pass_changes_nothing():
    mod = _bind(Before, "w", np.ones((8, 2, 3, 3), "float32"))
    tvm.ir.assert_structural_equal(ApplyTunedSchedules()(mod), mod)

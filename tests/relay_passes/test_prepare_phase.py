"""Before/Expected tests of the ``prepare`` phase's passes (``relay_passes/pipeline.py``).

The phase folds BatchNorm into the preceding convolution with TVM's ``FoldBatchnormToConv2D``
because it scales whole filters: a pruned weight stays exactly zero, so the sparse phase that
follows still sees the pruned structure. These tests pin that rewrite and the module the whole
phase leaves behind (one convolution with a folded constant weight and one constant bias add).
"""

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

#: The ``prepare`` phase, pass by pass, in the order ``relay_passes/pipeline.py`` lists them.
PREPARE_PASSES = (
    relax.transform.CanonicalizeBindings,
    relax.transform.FoldBatchnormToConv2D,
    relax.transform.DecomposeOpsForInference,
    relax.transform.FoldConstant,
    relax.transform.DeadCodeElimination,
)


@I.ir_module
class ConvBatchNorm:
    @R.function
    def main(x: R.Tensor((1, 2, 4, 4), "float32"), w: R.Tensor((3, 2, 3, 3), "float32"),
             gamma: R.Tensor((3,), "float32"), beta: R.Tensor((3,), "float32"),
             mean: R.Tensor((3,), "float32"), var: R.Tensor((3,), "float32")):
        with R.dataflow():
            y = R.nn.conv2d(x, w, padding=(1, 1))
            z = R.nn.batch_norm(y, gamma, beta, mean, var, axis=1, epsilon=0.0)
            out = z[0]
            R.output(out)
        return out


def _weights():
    """A pruned weight (zeros in every filter) and BatchNorm statistics whose folding is exact in float32."""
    w = np.zeros((3, 2, 3, 3), "float32")
    w[:, :, 1, :] = np.arange(1, 19, dtype="float32").reshape(3, 2, 3)  # only the middle row kept
    w[0, 1, 1, 1] = 0.0
    return {"w": w, "gamma": np.array([3.0, 1.0, 0.5], "float32"), "beta": np.array([1.0, 2.0, 3.0], "float32"),
            "mean": np.array([0.5, 1.0, 2.0], "float32"), "var": np.array([1.0, 4.0, 0.25], "float32")}


def _bind(mod, arrays):
    return relax.transform.BindParams("main", {name: tvm.runtime.tensor(a) for name, a in arrays.items()})(mod)


def test_batch_norm_folds_into_the_filters_as_one_scale_per_output_channel():
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 2, 4, 4), "float32"), w: R.Tensor((3, 2, 3, 3), "float32"),
                 gamma: R.Tensor((3,), "float32"), beta: R.Tensor((3,), "float32"),
                 mean: R.Tensor((3,), "float32"), var: R.Tensor((3,), "float32")):
            with R.dataflow():
                lv = R.add(var, T.float32(0.0))  # + epsilon
                lv1 = R.sqrt(lv)
                scale = R.divide(gamma, lv1)
                lv3 = R.reshape(scale, R.shape([3, 1, 1, 1]))
                folded = R.multiply(w, lv3)  # each filter times its channel's scale: zeros stay zero
                lv5 = R.nn.conv2d(x, folded, padding=(1, 1))
                lv6 = R.multiply(mean, scale)
                lv7 = R.subtract(beta, lv6)
                lv8 = R.reshape(lv7, R.shape([1, 3, 1, 1]))
                out = R.add(lv5, lv8)
                R.output(out)
            return out

    weights = _weights()
    after = relax.transform.FoldBatchnormToConv2D()(_bind(ConvBatchNorm, weights))
    tvm.ir.assert_structural_equal(after, _bind(Expected, weights))


def test_the_prepare_phase_leaves_one_convolution_with_the_pruned_zeros_and_a_constant_bias():
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 2, 4, 4), "float32"), folded: R.Tensor((3, 2, 3, 3), "float32"),
                 bias: R.Tensor((1, 3, 1, 1), "float32")):
            with R.dataflow():
                lv5 = R.nn.conv2d(x, folded, padding=(1, 1))
                out = R.add(lv5, bias)
                R.output(out)
            return out

    weights = _weights()
    scale = weights["gamma"] / np.sqrt(weights["var"])
    folded = weights["w"] * scale[:, None, None, None]
    bias = (weights["beta"] - weights["mean"] * scale).reshape(1, 3, 1, 1)
    after = tvm.transform.Sequential([make() for make in PREPARE_PASSES])(_bind(ConvBatchNorm, weights))
    tvm.ir.assert_structural_equal(after, _bind(Expected, {"folded": folded, "bias": bias}))
    assert np.array_equal(folded == 0, weights["w"] == 0)


def test_a_batch_norm_after_no_convolution_becomes_element_wise_operations():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 4, 4), "float32"), gamma: R.Tensor((3,), "float32"),
                 beta: R.Tensor((3,), "float32"), mean: R.Tensor((3,), "float32"), var: R.Tensor((3,), "float32")):
            with R.dataflow():
                y = R.nn.relu(x)
                z = R.nn.batch_norm(y, gamma, beta, mean, var, axis=1, epsilon=0.0)
                out = z[0]
                R.output(out)
            return out

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 4, 4), "float32"), mean4: R.Tensor((1, 3, 1, 1), "float32"),
                 std4: R.Tensor((1, 3, 1, 1), "float32"), gamma4: R.Tensor((1, 3, 1, 1), "float32"),
                 beta4: R.Tensor((1, 3, 1, 1), "float32"), mean: R.Tensor((3,), "float32"),
                 var: R.Tensor((3,), "float32")):
            with R.dataflow():
                y = R.nn.relu(x)
                lv1 = R.subtract(y, mean4)
                lv5 = R.divide(lv1, std4)
                lv7 = R.multiply(lv5, gamma4)
                lv9 = R.add(lv7, beta4)
                z = (lv9, mean, var)
                out = z[0]
                R.output(out)
            return out

    stats = {name: value for name, value in _weights().items() if name != "w"}
    after = tvm.transform.Sequential([make() for make in PREPARE_PASSES])(_bind(Before, stats))
    column = {f"{name}4": value.reshape(1, 3, 1, 1) for name, value in stats.items() if name != "var"}
    expected = _bind(Expected, {**column, "std4": np.sqrt(stats["var"]).reshape(1, 3, 1, 1),
                                "mean": stats["mean"], "var": stats["var"]})
    tvm.ir.assert_structural_equal(after, expected)

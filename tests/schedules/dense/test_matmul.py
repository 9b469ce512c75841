"""Dense linear layers (matmul + bias + ReLU) through the schedule phase, against PyTorch.

A constant weight is packed to ``[N / nt, K, nt]`` (each register tile reads one contiguous
stream); a weight that is no constant keeps its layout and the same rule schedules it.
"""

import numpy as np
import pytest
import torch
from tvm import relax

from schedules.dense.matmul import MatmulWeightPacking, column_block

from tests.conftest import relative_error
from tests.schedules.dense.harness import host_target, linear_module, primfuncs, run, scheduled_module


@pytest.mark.parametrize(
    "batch, features_in, features_out, has_bias, epilogue",
    [
        (1, 512, 10, True, None),  # the CIFAR classifiers
        (1, 1280, 10, True, None),
        (4, 64, 96, True, "relu"),
        (3, 37, 29, False, None),  # nothing divides the vector width
        (16, 128, 256, True, "relu"),
        (1, 2048, 1000, True, None),  # the ImageNet classifier: 1000 columns, blocks of half vectors
        (2, 960, 1280, True, "relu"),  # MobileNetV3's hidden classifier layer
    ],
)
def test_dense_linear_matches_pytorch(batch, features_in, features_out, has_bias, epilogue):
    rng = np.random.default_rng(batch * 1000 + features_out)
    x = rng.standard_normal((batch, features_in)).astype("float32")
    weight = rng.standard_normal((features_out, features_in)).astype("float32")
    bias = rng.standard_normal(features_out).astype("float32") if has_bias else None
    mod = linear_module(x.shape, weight, bias, epilogue)
    target = host_target()

    scheduled = scheduled_module(mod, target)
    funcs = primfuncs(scheduled)
    (matmul,) = [f for name, f in funcs.items() if "matmul" in name]
    assert 'T.sblock("matmul_update")' in matmul.script() and "T.vectorized" in matmul.script()
    packed = [param for param in matmul.params if len(param.shape) == 3]
    assert len(packed) == 1 and int(packed[0].shape[1]) == features_in

    with torch.no_grad():
        expected = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(weight),
                                              None if bias is None else torch.from_numpy(bias))
        expected = (torch.relu(expected) if epilogue == "relu" else expected).numpy()
    assert relative_error(run(scheduled, target, x), expected) <= 1e-5


@pytest.mark.parametrize("features_in, features_out", [(64, 1000), (37, 29), (128, 96)])
def test_weight_packing_round_trip(features_in, features_out):
    weight = np.arange(features_in * features_out, dtype="float32").reshape(features_in, features_out)
    packing = MatmulWeightPacking(param=1, columns_per_block=column_block(features_out, host_target()))
    packed = packing.pack(weight)
    for k, n in [(0, 0), (features_in - 1, features_out - 1), (features_in // 2, features_out // 3)]:
        assert packed[packing.index_map(k, n)] == weight[k, n]


def _matmul_of_two_inputs(m, k, n):
    bb = relax.BlockBuilder()
    a = relax.Var("a", relax.TensorType((m, k), "float32"))
    b = relax.Var("b", relax.TensorType((k, n), "float32"))
    with bb.function("main", [a, b]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.nn.relu(relax.op.matmul(a, b))))
        bb.emit_func_output(out)
    return bb.get()


def test_matmul_of_two_inputs_stays_unpacked_and_matches_numpy():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 48)).astype("float32")
    b = rng.standard_normal((48, 40)).astype("float32")
    target = host_target()
    scheduled = scheduled_module(_matmul_of_two_inputs(4, 48, 40), target)
    (matmul,) = [f for name, f in primfuncs(scheduled).items() if "matmul" in name]
    assert 'T.sblock("matmul_update")' in matmul.script()
    assert all(len(param.shape) == 2 for param in matmul.params)
    assert relative_error(run(scheduled, target, a, b), np.maximum(a @ b, 0)) <= 1e-5

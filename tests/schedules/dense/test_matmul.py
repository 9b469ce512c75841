"""Dense linear layers (matmul + bias + ReLU) through the schedule phase, against PyTorch."""

import numpy as np
import pytest
import torch

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

    with torch.no_grad():
        expected = torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(weight),
                                              None if bias is None else torch.from_numpy(bias))
        expected = (torch.relu(expected) if epilogue == "relu" else expected).numpy()
    assert relative_error(run(scheduled, target, x), expected) <= 1e-5

"""NaN and infinity reach the same outputs as in PyTorch, except through weights a plan pruned away.

A dense layer (and ReLU, ReLU6, hard-swish, max and average pooling) propagates them exactly as
PyTorch does. A sparse kernel computes only the weights it keeps: where PyTorch evaluates
``0 * inf = nan`` for a pruned weight, the kernel has no product at all, so its reference is the
convolution over the kept weights only. A weight holding NaN or infinity is never sparse.
"""

import numpy as np
import pytest
import torch
from torch import nn

import tvm_sparse
from relay_passes.sparse_rules import SparseRules


def _with_non_finite(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator)
    flat = x.view(-1)
    picks = torch.randperm(flat.numel(), generator=generator)[:3]
    flat[picks] = torch.tensor([float("nan"), float("inf"), float("-inf")])
    return x


DENSE_TAILS = {
    "relu": lambda: nn.ReLU(),
    "relu6": lambda: nn.ReLU6(),
    "hardswish": lambda: nn.Hardswish(),
    "max pool": lambda: nn.MaxPool2d(2),
    "max pool, padded, strided 1": lambda: nn.MaxPool2d(3, stride=1, padding=1),
    "max pool, ceil mode": lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True),
    "max pool, dilated": lambda: nn.MaxPool2d(2, dilation=2),
    "average pool": lambda: nn.AvgPool2d(2),
    "clamp": lambda: _Clamp(),
}


class _Clamp(nn.Module):
    def forward(self, x):
        return torch.clamp(x, -0.5, 0.25)


@pytest.mark.parametrize("tail", DENSE_TAILS)
@pytest.mark.parametrize("seed", [0])
def test_dense_layers_propagate_nan_and_infinity_as_pytorch(tail, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), DENSE_TAILS[tail]()).eval()
    x = _with_non_finite((1, 4, 7, 7), seed)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, x), target="llvm")
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.isnan(expected).any() or np.isinf(expected).any()
    np.testing.assert_allclose(compiled(x), expected, rtol=1e-5, atol=1e-5, equal_nan=True)


def _kept_weights_only(conv, activation, x):
    """``activation(conv(x))`` where each pruned (zero) weight contributes nothing, even for inf/NaN inputs."""
    weight = conv.weight.detach()
    cols = torch.nn.functional.unfold(x, conv.kernel_size, padding=conv.padding, stride=conv.stride)  # [N, C*k*k, L]
    flat = weight.reshape(weight.shape[0], -1)  # [K, C*k*k]
    products = flat[None, :, :, None] * cols[:, None, :, :]  # [N, K, C*k*k, L]
    products = torch.where(flat[None, :, :, None] != 0, products, torch.zeros(()))
    out = products.sum(dim=2) + conv.bias.detach()[None, :, None]
    size = [(s + 2 * p - k) // st + 1 for s, p, k, st in zip(x.shape[2:], conv.padding, conv.kernel_size, conv.stride)]
    return activation(out.reshape(x.shape[0], -1, *size)).numpy()


@pytest.mark.parametrize("kernel, activation", [(3, nn.ReLU()), (3, nn.Identity()), (1, nn.ReLU6())])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_sparse_kernel_propagates_through_its_kept_weights(kernel, activation, seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(16, 16, kernel, padding=kernel // 2)
    with torch.no_grad():  # 8x1 block-punched: 75% of the (8 filters x 1 channel x position) columns removed
        keep = (torch.rand(2, 16, kernel, kernel) > 0.75).float().repeat_interleave(8, 0)
        conv.weight.mul_(keep)
    model = nn.Sequential(conv, activation).eval()
    x = _with_non_finite((1, 16, 6, 6), seed)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, x), target="llvm", rules=SparseRules(min_macs=0))
    assert compiled.report[0].kernel != "tvm dense", "the layer ran on a sparse kernel"
    expected = _kept_weights_only(conv, activation, x)
    np.testing.assert_allclose(compiled(x), expected, rtol=1e-5, atol=1e-5, equal_nan=True)


def _block_sparse_conv(seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(16, 16, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_((torch.rand(2, 16, 3, 3) > 0.75).float().repeat_interleave(8, 0))
    return conv


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_sparse_layer_with_a_non_finite_weight_stays_dense_and_propagates_it(value):
    conv = _block_sparse_conv(4)
    with torch.no_grad():
        conv.weight[tuple(conv.weight.nonzero()[0])] = value
    model = nn.Sequential(conv, nn.ReLU()).eval()
    x = torch.randn(1, 16, 6, 6)
    compiled = tvm_sparse.compile(*tvm_sparse.from_torch(model, x), target="llvm", rules=SparseRules(min_macs=0))
    (decision,) = compiled.report
    assert decision.kernel == "tvm dense" and "holds NaN or infinity" in decision.reason
    expected = model(x).detach().numpy()
    assert not np.isfinite(expected).all()
    np.testing.assert_allclose(compiled(x), expected, rtol=1e-5, atol=1e-5, equal_nan=True)

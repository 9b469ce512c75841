"""Small PyTorch layers with pattern- and block-punched weights, built for the pass tests."""

import numpy as np
import torch

#: Four 4-entry 3x3 patterns.
LIBRARY = np.array([[[0, 1, 0], [1, 1, 1], [0, 0, 0]], [[0, 0, 0], [1, 1, 1], [0, 1, 0]],
                    [[0, 1, 0], [1, 1, 0], [0, 1, 0]], [[0, 1, 0], [0, 1, 1], [0, 1, 0]]], dtype="float32")


def pattern_prune_(weight, kept_kernels=0.3, seed=0):
    """Give a [K, C, 3, 3] weight a random pattern + connectivity structure, in place."""
    rng = np.random.default_rng(seed)
    out_channels, in_channels = weight.shape[:2]
    patterns = LIBRARY[rng.integers(0, len(LIBRARY), (out_channels, in_channels))]
    keep = rng.random((out_channels, in_channels)) < kept_kernels
    with torch.no_grad():
        weight.mul_(torch.from_numpy(patterns * keep[..., None, None]))


def block_punch_(weight, block=(8, 4), kept_columns=0.25, seed=0):
    """Give a [K, C, R, S] or [K, C] weight a random block-punched structure, in place."""
    rng = np.random.default_rng(seed)
    shaped = weight.reshape(weight.shape[0], weight.shape[1], -1)
    taps = shaped.shape[2]
    mask = np.zeros(tuple(shaped.shape), dtype="float32")
    bk, bc = block
    for k in range(0, shaped.shape[0], bk):
        for c in range(0, shaped.shape[1], bc):
            columns = rng.random((min(bc, shaped.shape[1] - c), taps)) < kept_columns
            mask[k:k + bk, c:c + bc] = columns[None]
    with torch.no_grad():
        weight.mul_(torch.from_numpy(mask).reshape(weight.shape))


class ResidualBlock(torch.nn.Module):
    """conv3x3 + BN + ReLU, conv3x3 + BN + residual + ReLU6, conv1x1 with stride, linear."""

    def __init__(self, channels=16, stride=2):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(channels)
        self.project = torch.nn.Conv2d(channels, 2 * channels, 1, stride=stride)
        self.fc = torch.nn.Linear(2 * channels * 16 // stride ** 2, 64)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        y = torch.nn.functional.relu6(self.bn(self.conv2(y)) + y)
        return self.fc(self.project(y).flatten(1))


def sparse_residual_block(seed=0):
    """A :class:`ResidualBlock` (input [2, 16, 4, 4]) with pattern 3x3 and block-punched 1x1/linear weights."""
    torch.manual_seed(seed)
    model = ResidualBlock()
    pattern_prune_(model.conv1.weight, seed=seed)
    pattern_prune_(model.conv2.weight, seed=seed + 1)
    block_punch_(model.project.weight, seed=seed)
    block_punch_(model.fc.weight, seed=seed)
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model.eval(), torch.randn(2, 16, 4, 4)

"""A small CNN for quick pruning experiments (digits in tests and the demo, CIFAR-10 in the report)."""

import torch
import torch.nn.functional as F
from torch import nn


class SmallCNN(nn.Module):
    """Three 3x3 convolutions with BatchNorm, two max-pools, and a two-layer classifier.

    Parameters
    ----------
    in_channels : int
        1 for digits, 3 for CIFAR-10.
    num_classes : int
    width : int
        Filters of the first convolution; the next two have ``2 * width`` and ``4 * width``.
    """

    def __init__(self, in_channels=1, num_classes=10, width=16):
        super().__init__()
        widths = (width, 2 * width, 4 * width)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.conv2 = nn.Conv2d(widths[0], widths[1], 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(widths[1])
        self.conv3 = nn.Conv2d(widths[1], widths[2], 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(widths[2])
        self.fc1 = nn.Linear(widths[2] * 16, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        x = F.max_pool2d(torch.relu(self.bn3(self.conv3(x))), 2)
        x = F.adaptive_avg_pool2d(x, 4).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))

"""A small ResNet for accuracy experiments on real data that still train in minutes on two cores."""

import torch
from torch import nn

from tvm_sparse.models.cifar import BasicBlock


class SmallResNet(nn.Module):
    """A 3x3 stem and one basic block per stage (ResNet-10 style), global pooling and a linear head.

    Every layer kind the mapping tells apart is here (3x3 on large and small maps, strided 3x3,
    1x1 shortcuts, the stem, a linear head), at a size Fashion-MNIST trains on two cores.

    Parameters
    ----------
    in_channels : int
    num_classes : int
    widths : tuple of int
        Channels of the stages; each stage after the first halves the map.
    """

    def __init__(self, in_channels=1, num_classes=10, widths=(16, 32, 64, 128)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU())
        stages, channels = [], widths[0]
        for index, width in enumerate(widths):
            stages.append(BasicBlock(channels, width, 1 if index == 0 else 2))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.stages(self.stem(x)), 1), 1))

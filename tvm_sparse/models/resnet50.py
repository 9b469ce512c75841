"""ResNet-50 v1.5 with ImageNet shapes (3x224x224 in, 1000 classes out), torchvision's layout.

A 7x7 stride-2 stem and a 3x3 stride-2 max-pool, then four stages of bottleneck blocks (1x1
reduce, 3x3, 1x1 expand by 4) with the stride on the 3x3 convolution (v1.5) and a strided 1x1
projection on the shortcut where the shape changes.
"""

import torch
from torch import nn


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 to ``width``, 3x3 (stride here), 1x1 to ``4 * width``, plus the shortcut."""

    expansion = 4

    def __init__(self, in_channels, width, stride=1):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


#: (bottleneck width, blocks, stride of the first block) per stage.
RESNET50_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


class ResNet50(nn.Module):
    """ResNet-50 v1.5 for 224x224 inputs (any size that survives the 32x downsampling works)."""

    input_size = 224

    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, in_channels = [], 64
        for width, blocks, stride in RESNET50_STAGES:
            layers = [Bottleneck(in_channels, width, stride)]
            in_channels = width * Bottleneck.expansion
            layers += [Bottleneck(in_channels, width) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        out = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))

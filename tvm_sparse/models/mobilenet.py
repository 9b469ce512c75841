"""MobileNets with ImageNet shapes (3x224x224 in, 1000 classes out), torchvision's layouts.

- :class:`MobileNetV2`: a stride-2 3x3 stem, inverted residual blocks with ReLU6 (no expansion
  convolution in the first block), a 1x1 convolution to 1280 channels and a linear classifier.
- :class:`MobileNetV3Large`: MobileNetV3-Large: hard-swish or ReLU per block, 3x3 and 5x5
  depthwise convolutions, squeeze-excite (global average pool, two 1x1 convolutions, hard
  sigmoid, channel scaling) in some blocks, a two-layer classifier with hard-swish.
"""

import torch
from torch import nn


def make_divisible(value, divisor=8):
    """``value`` rounded to a multiple of ``divisor``, never below 90% of it (the MobileNet channel rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn(in_channels, out_channels, kernel_size, stride=1, groups=1, activation=None):
    """Convolution (no bias, "same" padding), BatchNorm and an optional activation module class."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                        bias=False), nn.BatchNorm2d(out_channels)]
    if activation is not None:
        layers.append(activation(inplace=True))
    return layers


class SqueezeExcite(nn.Module):
    """Channel attention: scale each channel by hardsigmoid(fc2(relu(fc1(global average))))."""

    def __init__(self, channels):
        super().__init__()
        squeezed = make_divisible(channels // 4)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x):
        scale = nn.functional.adaptive_avg_pool2d(x, 1)
        scale = nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(scale))))
        return x * scale


class MobileBlock(nn.Module):
    """Inverted residual: 1x1 expansion (left out when ``hidden == in_channels``), ``kernel_size``
    depthwise, optional squeeze-excite, 1x1 linear projection; a residual when shapes allow."""

    def __init__(self, in_channels, hidden, out_channels, kernel_size, stride, activation, squeeze_excite=False):
        super().__init__()
        self.use_residual = stride == 1 and in_channels == out_channels
        layers = [] if hidden == in_channels else conv_bn(in_channels, hidden, 1, activation=activation)
        layers += conv_bn(hidden, hidden, kernel_size, stride, groups=hidden, activation=activation)
        if squeeze_excite:
            layers.append(SqueezeExcite(hidden))
        layers += conv_bn(hidden, out_channels, 1)
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        out = self.block(x)
        return x + out if self.use_residual else out


# (expansion, out_channels, repeats, stride): the ImageNet strides.
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    """MobileNetV2 for 224x224 inputs."""

    input_size = 224

    def __init__(self, num_classes=1000):
        super().__init__()
        layers, in_channels = conv_bn(3, 32, 3, 2, activation=nn.ReLU6), 32
        for expansion, out_channels, repeats, stride in MOBILENET_V2_STAGES:
            for index in range(repeats):
                layers.append(MobileBlock(in_channels, in_channels * expansion, out_channels, 3,
                                          stride if index == 0 else 1, nn.ReLU6))
                in_channels = out_channels
        layers += conv_bn(in_channels, 1280, 1, activation=nn.ReLU6)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        out = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(out, 1))


# (kernel, hidden channels, out channels, squeeze-excite, hard-swish, stride) after a 16-channel stem.
MOBILENET_V3_LARGE_BLOCKS = (
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1),
)


class MobileNetV3Large(nn.Module):
    """MobileNetV3-Large for 224x224 inputs."""

    input_size = 224

    def __init__(self, num_classes=1000):
        super().__init__()
        layers, in_channels = conv_bn(3, 16, 3, 2, activation=nn.Hardswish), 16
        for kernel_size, hidden, out_channels, squeeze_excite, hard_swish, stride in MOBILENET_V3_LARGE_BLOCKS:
            activation = nn.Hardswish if hard_swish else nn.ReLU
            layers.append(MobileBlock(in_channels, hidden, out_channels, kernel_size, stride, activation,
                                      squeeze_excite))
            in_channels = out_channels
        layers += conv_bn(in_channels, 6 * in_channels, 1, activation=nn.Hardswish)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(6 * in_channels, 1280), nn.Hardswish(inplace=True),
                                        nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        out = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(out, 1))

"""MobileNetV2 (Sandler et al. 2018) adapted to 32×32 inputs.

The ImageNet net downsamples 32× (224 → 7); on CIFAR that would leave 1×1 maps.
The CIFAR variant used by the pruning literature keeps the paper's block table
but runs the stem and the second stage at stride 1, downsampling 8× in total
(32 → 4). Everything else follows the paper:

* inverted residual: ``1×1 expand (t·c) - BN - ReLU6 - 3×3 depthwise - BN -
  ReLU6 - 1×1 project - BN``, linear bottleneck (no activation after project);
* residual add only when stride is 1 and width is unchanged;
* a final 1×1 conv to 1280 channels, global pool, linear classifier.

For pruning, the depthwise conv ties its input and output channels one to one
(groups == channels), and the residual adds tie the project convs of a stage.
About 2.24M params and 88.0M MACs at 32×32×3.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["MobileNetV2", "InvertedResidual", "mobilenetv2", "CIFAR_BLOCKS"]

#: (expansion t, out channels c, repeats n, first stride s); stage 2 stride 2 → 1 for CIFAR.
CIFAR_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn(in_planes: int, out_planes: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
    layers: list[nn.Module] = [
        nn.Conv2d(in_planes, out_planes, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_planes),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Expand - depthwise - project, with a residual add when shapes allow."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_planes * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_bn(in_planes, hidden, 1))
        layers.append(conv_bn(hidden, hidden, 3, stride, groups=hidden))
        layers.append(conv_bn(hidden, out_planes, 1, act=False))
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_planes == out_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # NOTE: use_residual is fixed at construction, so fx traces one branch only.
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """Stem (32, stride 1), inverted-residual stages, 1×1 conv to 1280, pool, fc."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, blocks=CIFAR_BLOCKS, last_width: int = 1280):
        super().__init__()
        layers: list[nn.Module] = [conv_bn(in_channels, 32, 3, stride=1)]
        width = 32
        for expansion, out_planes, repeats, stride in blocks:
            for index in range(repeats):
                layers.append(InvertedResidual(width, out_planes, stride if index == 0 else 1, expansion))
                width = out_planes
        layers.append(conv_bn(width, last_width, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last_width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def mobilenetv2(num_classes: int = 10, in_channels: int = 3) -> MobileNetV2:
    """CIFAR MobileNetV2 (width 1.0)."""
    return MobileNetV2(num_classes, in_channels)

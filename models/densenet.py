"""DenseNet-40 (Huang et al. 2017) in the form used by the pruning papers (HRank, ...).

Growth rate ``k = 12``, three dense blocks of 12 layers, no bottleneck and no
compression. A dense layer is ``BN - ReLU - conv3×3(k)`` and its output is
*concatenated* to its input, so layer ``i`` of a block sees ``c0 + i·k``
channels. Between blocks a transition ``BN - ReLU - conv1×1 - avgpool2``
keeps the width (compression 1). The stem is a 3×3 conv to ``2k = 24``
channels, giving widths 24 → 168 → 312 → 456 and the published
1.04M params / 282.9M MACs at 32×32×3.

For a pruning compiler DenseNet is the concat stress test: every output
channel of a dense layer is read by all later layers of its block, through
a chain of ``torch.cat`` nodes (an index mapping per concat).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DenseNet", "DenseLayer", "Transition", "densenet40"]


class DenseLayer(nn.Module):
    """``cat([x, conv3×3(relu(bn(x)))], dim=1)`` — adds ``growth`` channels."""

    def __init__(self, in_planes: int, growth: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(F.relu(self.bn(x)))
        return torch.cat([x, out], dim=1)


class Transition(nn.Module):
    """``avgpool2(conv1×1(relu(bn(x))))`` between dense blocks."""

    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(F.relu(self.bn(x))))


class DenseNet(nn.Module):
    """Stem, ``len(blocks)`` dense blocks separated by transitions, BN-ReLU, pool, fc."""

    def __init__(self, depth: int = 40, growth: int = 12, compression: float = 1.0,
                 num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if (depth - 4) % 3 != 0:
            raise ValueError(f"DenseNet depth must be 3n+4, got {depth}")
        layers_per_block = (depth - 4) // 3
        width = 2 * growth
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for index in range(3):
            stages.append(nn.Sequential(*[DenseLayer(width + i * growth, growth) for i in range(layers_per_block)]))
            width += layers_per_block * growth
            if index < 2:
                out_width = int(width * compression)
                stages.append(Transition(width, out_width))
                width = out_width
        self.dense1, self.trans1, self.dense2, self.trans2, self.dense3 = stages
        self.bn = nn.BatchNorm2d(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.trans1(self.dense1(x))
        x = self.trans2(self.dense2(x))
        x = F.relu(self.bn(self.dense3(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def densenet40(num_classes: int = 10, in_channels: int = 3) -> DenseNet:
    """DenseNet-40, k=12 (1.04M params, 282.9M MACs at 32×32×3)."""
    return DenseNet(40, 12, 1.0, num_classes, in_channels)

"""CIFAR ResNets of He et al. (2016, Sec. 4.2): ResNet-20/56/110.

The network is a 3×3 stem (16 channels) followed by three stages of ``n`` basic
blocks each, with widths 16, 32 and 64; the first block of stages 2 and 3
halves the spatial size. Depth is ``6n + 2`` (n = 3, 9, 18 for 20, 56, 110).

When a block changes width, the identity shortcut no longer fits. The paper
offers two fixes:

* **Option A** (the paper's CIFAR choice, and the one the pruning literature
  reports: ResNet-56 = 0.85M params / 125.5M MACs): subsample the input by 2
  and zero-pad the new channels. It has no parameters, so its graph holds a
  strided slice and a ``pad`` on the channel axis — a channel *index mapping*
  that a pruning compiler must understand (pruned output channel ``c`` of the
  block pairs with input channel ``c - planes // 4`` of the shortcut).
* **Option B**: a 1×1 strided convolution plus BatchNorm. It adds 2,752
  parameters and 0.26M MACs (~0.2%) to ResNet-56, and every shortcut becomes
  an ordinary prunable layer.

Both are offered through ``shortcut="A" | "B"``; the default is ``"A"`` because
it reproduces the published figures exactly.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["CifarResNet", "BasicBlock", "resnet20", "resnet56", "resnet110"]

STAGE_WIDTHS = (16, 32, 64)


class PadShortcut(nn.Module):
    """Option-A shortcut: keep every second pixel, zero-pad channels on both sides.

    Going from ``c`` to ``2c`` channels pads ``c // 2`` zero channels before and
    after, so input channel ``i`` lands at output channel ``i + c // 2``.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.stride = stride
        extra = out_planes - in_planes
        self.pad_before = extra // 2
        self.pad_after = extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


def _conv_shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """Option-B shortcut: strided 1×1 projection followed by BatchNorm."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with a residual add: ``relu(bn2(conv2(relu(bn1(conv1 x)))) + s(x))``."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _make_shortcut(in_planes, planes, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _make_shortcut(in_planes: int, planes: int, stride: int, kind: str) -> nn.Module:
    if stride == 1 and in_planes == planes:
        return nn.Identity()
    if kind == "A":
        return PadShortcut(in_planes, planes, stride)
    if kind == "B":
        return _conv_shortcut(in_planes, planes, stride)
    raise ValueError(f"shortcut must be 'A' or 'B', got {kind!r}")


class CifarResNet(nn.Module):
    """Stem, three stages of basic blocks, global average pool, linear classifier.

    NOTE: the pool is adaptive, so 28×28 inputs (Fashion-MNIST) work unchanged:
    the stages then see 28, 14 and 7 pixels instead of 32, 16 and 8.
    """

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, shortcut: str = "A"):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        blocks_per_stage = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, STAGE_WIDTHS[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        in_planes = STAGE_WIDTHS[0]
        stages = []
        for index, planes in enumerate(STAGE_WIDTHS):
            stride = 1 if index == 0 else 2
            stages.append(_make_stage(in_planes, planes, blocks_per_stage, stride, shortcut))
            in_planes = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _make_stage(in_planes: int, planes: int, blocks: int, stride: int, shortcut: str) -> nn.Sequential:
    layers = [BasicBlock(in_planes, planes, stride, shortcut)]
    layers += [BasicBlock(planes, planes, 1, shortcut) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def resnet20(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """ResNet-20 (0.27M params, 40.6M MACs at 32×32×3)."""
    return CifarResNet(20, num_classes, in_channels, shortcut)


def resnet56(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """ResNet-56 (0.85M params, 125.5M MACs at 32×32×3)."""
    return CifarResNet(56, num_classes, in_channels, shortcut)


def resnet110(num_classes: int = 10, in_channels: int = 3, shortcut: str = "A") -> CifarResNet:
    """ResNet-110 (1.73M params, 252.9M MACs at 32×32×3)."""
    return CifarResNet(110, num_classes, in_channels, shortcut)

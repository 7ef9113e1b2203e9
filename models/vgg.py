"""CIFAR VGG-16 as used by the filter-pruning papers (Li et al. 2017, HRank, ...).

Thirteen 3×3 conv-BN-ReLU layers in five groups (64, 128, 256, 512, 512
channels); a 2×2 max-pool closes each of the first four groups. The fifth
group ends in a global average pool instead of a fifth max-pool, and the
classifier is ``Linear(512, 512) - BN - ReLU - Linear(512, classes)``.

That classifier is what gives the published 313.7M MACs / 14.98M params:
conv layers contribute 313.2M MACs and 14.71M weights, the two linear layers
0.27M of each. (The original ImageNet head, 4096-wide, would add ~119M params.)

NOTE: at 32×32 the fifth group sees 2×2 maps, so the average pool equals the
max-pool + flatten of the papers in cost; being adaptive, it also accepts 28×28.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["VGG", "vgg16", "VGG16_CONFIG"]

#: Channel counts; "M" is a 2×2 max-pool.
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


class VGG(nn.Module):
    """Plain conv stack + global pool + two-layer classifier."""

    def __init__(self, config=VGG16_CONFIG, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.features, width = _make_features(config, in_channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(width, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _make_features(config, in_channels: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    width = in_channels
    for item in config:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers += [nn.Conv2d(width, item, 3, padding=1, bias=False), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
        width = item
    return nn.Sequential(*layers), width


def vgg16(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """CIFAR VGG-16 with BN (14.98M params, 313.5M MACs at 32×32×3)."""
    return VGG(VGG16_CONFIG, num_classes, in_channels)

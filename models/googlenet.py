"""GoogLeNet (Szegedy et al. 2015) adapted to CIFAR, as in the pruning papers (HRank, ...).

The CIFAR form keeps the nine inception modules of the paper (3a-3b, 4a-4e,
5a-5b) but replaces the ImageNet stem by one 3×3 conv to 192 channels, drops
the auxiliary heads, and, in the "5×5" branch, uses two stacked 3×3 convs.
With two stride-2 max-pools the modules run at 32, 16 and 8 pixels:
6.15M params and 1.53G MACs at 32×32×3.

An inception module runs four branches on the same input and concatenates
them on channels::

    b1: 1×1                      -> n1
    b2: 1×1 (r3) -> 3×3          -> n3
    b3: 1×1 (r5) -> 3×3 -> 3×3   -> n5
    b4: maxpool3×3 -> 1×1        -> pool_planes

For pruning this is the *split* pattern: one producer feeds four consumers
(each branch's first conv prunes the same input channels), and the concat
maps each branch's output channels to a slice of the next module's input.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["GoogLeNet", "Inception", "googlenet", "INCEPTION_CONFIG"]

#: (n1, r3, n3, r5, n5, pool_planes) per module, from Table 1 of the paper.
INCEPTION_CONFIG = {
    "a3": (64, 96, 128, 16, 32, 32),
    "b3": (128, 128, 192, 32, 96, 64),
    "a4": (192, 96, 208, 16, 48, 64),
    "b4": (160, 112, 224, 24, 64, 64),
    "c4": (128, 128, 256, 24, 64, 64),
    "d4": (112, 144, 288, 32, 64, 64),
    "e4": (256, 160, 320, 32, 128, 128),
    "a5": (256, 160, 320, 32, 128, 128),
    "b5": (384, 192, 384, 48, 128, 128),
}


def conv_bn_relu(in_planes: int, out_planes: int, kernel: int) -> nn.Sequential:
    """Conv (with bias, as in the reference CIFAR code) + BN + ReLU, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel, padding=kernel // 2),
        nn.BatchNorm2d(out_planes),
        nn.ReLU(inplace=True),
    )


class Inception(nn.Module):
    """Four parallel branches concatenated on channels (see module docstring)."""

    def __init__(self, in_planes: int, n1: int, r3: int, n3: int, r5: int, n5: int, pool_planes: int):
        super().__init__()
        self.b1 = conv_bn_relu(in_planes, n1, 1)
        self.b2 = nn.Sequential(conv_bn_relu(in_planes, r3, 1), conv_bn_relu(r3, n3, 3))
        self.b3 = nn.Sequential(conv_bn_relu(in_planes, r5, 1), conv_bn_relu(r5, n5, 3), conv_bn_relu(n5, n5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_bn_relu(in_planes, pool_planes, 1))
        self.out_planes = n1 + n3 + n5 + pool_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


class GoogLeNet(nn.Module):
    """3×3 stem (192), inception 3a-3b, pool, 4a-4e, pool, 5a-5b, global pool, fc."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.pre_layers = conv_bn_relu(in_channels, 192, 3)
        width = 192
        for name, config in INCEPTION_CONFIG.items():
            module = Inception(width, *config)
            setattr(self, name, module)
            width = module.out_planes
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b3(self.a3(self.pre_layers(x)))
        x = self.maxpool(x)
        x = self.e4(self.d4(self.c4(self.b4(self.a4(x)))))
        x = self.maxpool(x)
        x = self.b5(self.a5(x))
        return self.linear(torch.flatten(self.pool(x), 1))


def googlenet(num_classes: int = 10, in_channels: int = 3) -> GoogLeNet:
    """CIFAR GoogLeNet (6.15M params, 1.53G MACs at 32×32×3)."""
    return GoogLeNet(num_classes, in_channels)

"""LeNet-5 in the "20-50-500" form of the Caffe MNIST example, used by the
pruning literature (Han et al. 2015, ...): 0.43M params, 2.29M MACs on 28×28×1.

``conv5×5(20) - pool - conv5×5(50) - pool - fc(500) - fc(classes)``. The
flattened feature size depends on the input size (28 → 50·4·4 = 800), so the
factory takes ``image_size``; ReLU follows every conv and the first fc.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["LeNet5", "lenet5"]


class LeNet5(nn.Module):
    """Two 5×5 conv + max-pool stages and a two-layer MLP."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 20, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(20, 50, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
        )
        side = ((image_size - 4) // 2 - 4) // 2
        self.classifier = nn.Sequential(
            nn.Linear(50 * side * side, 500),
            nn.ReLU(inplace=True),
            nn.Linear(500, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def lenet5(num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> LeNet5:
    """LeNet-5 (20-50-500). NOTE: defaults to 1 input channel, as in the paper."""
    return LeNet5(num_classes, in_channels, image_size)

"""Reference networks from the structured-pruning literature.

Every model is a plain ``nn.Module`` that ``torch.fx.symbolic_trace`` can trace
(no data-dependent control flow), built by a factory taking
``num_classes=10, in_channels=3`` (LeNet-5 defaults to 1 channel, as in its paper).

    >>> import models
    >>> net = models.build("resnet56", num_classes=10, in_channels=1)
    >>> shape = models.INPUT_SHAPES["resnet56"]      # (1, 3, 32, 32)

Published costs at :data:`INPUT_SHAPES` (MACs of conv + linear layers) are in
:data:`PUBLISHED_COSTS`; ``tests/models/test_reference_costs.py`` checks them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from .densenet import densenet40
from .googlenet import googlenet
from .lenet import lenet5
from .mobilenetv2 import mobilenetv2
from .resnet_cifar import resnet20, resnet56, resnet110
from .vgg import vgg16

__all__ = ["REGISTRY", "INPUT_SHAPES", "PUBLISHED_COSTS", "PublishedCost", "build"]

REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "vgg16": vgg16,
    "densenet40": densenet40,
    "googlenet": googlenet,
    "mobilenetv2": mobilenetv2,
    "lenet5": lenet5,
}

#: Input shape (N, C, H, W) at which each paper reports its costs.
INPUT_SHAPES: dict[str, tuple[int, int, int, int]] = {
    name: (1, 1, 28, 28) if name == "lenet5" else (1, 3, 32, 32) for name in REGISTRY
}


@dataclass(frozen=True)
class PublishedCost:
    """Cost reported in the pruning literature (HRank, Li et al., Han et al.)."""

    macs: float
    params: float


#: Published figures the factories must reproduce (MACs within 1%, params within 2.5%).
PUBLISHED_COSTS: dict[str, PublishedCost] = {
    "resnet56": PublishedCost(125.49e6, 0.85e6),
    "resnet110": PublishedCost(252.89e6, 1.72e6),
    "vgg16": PublishedCost(313.73e6, 14.98e6),
    "densenet40": PublishedCost(282.92e6, 1.04e6),
    "googlenet": PublishedCost(1.52e9, 6.15e6),
    "lenet5": PublishedCost(2.29e6, 0.43e6),
}


def build(name: str, **kwargs) -> nn.Module:
    """Build a registered model by name, forwarding ``kwargs`` to its factory."""
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {sorted(REGISTRY)}") from None
    return factory(**kwargs)

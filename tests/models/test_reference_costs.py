"""Published MACs/params of the reference networks, measured two independent ways.

1. ``torch.utils.flop_counter.FlopCounterMode``: counts FLOPs of every aten op;
   for conv and linear (the only ops with MACs here) FLOPs = 2 × MACs.
2. ``graphprune``'s own counter (``graphprune.cost.count_cost`` or the top-level
   ``graphprune.count_cost``), asserted too whenever it is importable.

Tolerances from the tracker: MACs within 1%, params within 2.5%.
"""
from __future__ import annotations

import importlib

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import models

MAC_TOLERANCE = 0.01
PARAM_TOLERANCE = 0.025


def _flop_counter_macs(net: torch.nn.Module, x: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x)
    return counter.get_total_flops() / 2


def _graphprune_count_cost():
    """``count_cost`` from graphprune.cost, else graphprune, else None (not written yet)."""
    for module_name in ("graphprune.cost", "graphprune"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, "count_cost"):
            return module.count_cost
    return None


def _assert_close(measured: float, published: float, tolerance: float, what: str) -> None:
    error = abs(measured / published - 1.0)
    assert error <= tolerance, f"{what}: measured {measured:,.0f} vs published {published:,.0f} ({error:.2%} off)"


@pytest.mark.parametrize("name", sorted(models.PUBLISHED_COSTS))
def test_costs_match_published(name):
    published = models.PUBLISHED_COSTS[name]
    net = models.build(name).eval()
    x = torch.randn(models.INPUT_SHAPES[name])
    params = sum(p.numel() for p in net.parameters())
    _assert_close(_flop_counter_macs(net, x), published.macs, MAC_TOLERANCE, f"{name} MACs (FlopCounterMode)")
    _assert_close(params, published.params, PARAM_TOLERANCE, f"{name} params")
    count_cost = _graphprune_count_cost()
    if count_cost is not None:
        cost = count_cost(net, x)
        _assert_close(cost.macs, published.macs, MAC_TOLERANCE, f"{name} MACs (graphprune.count_cost)")
        _assert_close(cost.params, published.params, PARAM_TOLERANCE, f"{name} params (graphprune.count_cost)")


def test_resnet20_matches_the_paper_size():
    """He et al. list ResNet-20 at 0.27M params; 40.55M MACs is the figure the pruning papers use."""
    net = models.build("resnet20")
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(0.27e6, rel=0.01)
    assert _flop_counter_macs(net.eval(), torch.randn(1, 3, 32, 32)) == pytest.approx(40.55e6, rel=0.01)


def test_flop_counter_counts_macs_as_half_the_flops():
    """Guard the FLOPs = 2 × MACs convention on a layer whose MACs are known by hand."""
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert _flop_counter_macs(conv, torch.randn(1, 3, 10, 10)) == 8 * 3 * 9 * 10 * 10

"""The time proxy's activation count: computed activations only (views and fused conv epilogues are free)."""
import numpy as np
import torch
import torch.nn as nn

import graphprune
from graphprune.search.cost import MACS_PER_ELEMENT, ActivationCost, FastCost, TimeProxyCost

X = torch.randn(1, 3, 8, 8)


class Block(nn.Module):
    """conv-bn-relu (fused: the conv's output only), conv-bn + residual add + relu (fused), then SiLU and a
    pooled gate multiply (not fused: both counted), a view (free) and a classifier."""

    def __init__(self, act: nn.Module):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.act, self.fc = act, nn.Linear(16, 4)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = torch.relu(self.b2(self.c2(y)) + y)
        y = self.act(y)
        y = y * y.mean((2, 3), keepdim=True)
        return self.fc(y.mean((2, 3)).view(1, 16))


def test_fused_epilogues_are_free_and_the_rest_counted():
    relu_graph = graphprune.inspect(Block(nn.ReLU()).eval(), X)
    silu_graph = graphprune.inspect(Block(nn.SiLU()).eval(), X)
    per_map = 16 * 8 * 8
    # conv outputs (2), the gate's mean (16) and multiply, the pooled mean (16), the classifier (4)
    base = 2 * per_map + 16 + per_map + 16 + 4
    assert ActivationCost(silu_graph).dense == base + per_map  # SiLU is counted
    # a ReLU after the fused add-relu chain (its only user) is part of the epilogue too
    assert ActivationCost(relu_graph).dense == base


def test_elements_shrink_with_the_width_and_the_proxy_adds_them():
    graph = graphprune.inspect(Block(nn.SiLU()).eval(), X)
    keep = graph.full_keep()
    keep[graph.groups[0].units] = np.arange(graph.groups[0].n_units) < graph.groups[0].n_units // 2
    acts, proxy, macs = ActivationCost(graph), TimeProxyCost(graph), FastCost(graph, "macs")
    assert acts.of(keep) < acts.dense
    assert proxy.of(keep) == macs.of(keep) + MACS_PER_ELEMENT * acts.of(keep)
    assert proxy.dense == macs.dense + MACS_PER_ELEMENT * acts.dense

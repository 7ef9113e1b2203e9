"""Each criterion ranks channels correctly on a model whose right answer is known by construction."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune.importance import CRITERIA, normalize_per_group, score_units


class Known(nn.Module):
    """conv -> BN -> conv: channel i of the first conv has weights and BN scale growing with i."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 6, 1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.b = nn.Conv2d(6, 3, 1, bias=False)
        with torch.no_grad():
            scale = torch.arange(1, 7, dtype=torch.float32)
            self.a.weight.copy_(scale.view(6, 1, 1, 1).expand(6, 2, 1, 1))
            self.bn.weight.copy_(scale)
            self.bn.bias.zero_()
            self.b.weight.fill_(1.0)

    def forward(self, x):
        return self.b(self.bn(self.a(x)))


@pytest.fixture
def graph():
    return graphprune.inspect(Known().eval(), torch.randn(1, 2, 4, 4))


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn"])
def test_ranking_follows_magnitude(graph, criterion):
    s = score_units(graph, criterion)
    assert len(graph.groups) == 1 and graph.n_units == 6
    assert list(np.argsort(s)) == [0, 1, 2, 3, 4, 5]


def test_l1_value_is_sum_over_coupled_slices(graph):
    s = score_units(graph, "l1")
    # unit i: conv a row (2 * i) + bn gamma (i) + bn beta (0) + conv b column (3 * 1)
    i = np.arange(1, 7)
    assert np.allclose(s, 2 * i + i + 3)


def test_random_is_seeded_and_uninformative(graph):
    assert np.array_equal(score_units(graph, "random"), score_units(graph, "random"))


def test_custom_callable_and_errors(graph):
    s = score_units(graph, lambda g: -np.arange(g.n_units))
    assert s[0] == 0
    with pytest.raises(ValueError, match="unknown importance"):
        score_units(graph, "nope")
    with pytest.raises(ValueError, match="shape"):
        score_units(graph, lambda g: np.zeros(3))


def test_normalize_per_group(graph):
    s = normalize_per_group(graph, score_units(graph, "l2"), "max")
    assert s.max() == pytest.approx(1.0)
    assert set(CRITERIA) >= {"l1", "l2", "bn", "random"}

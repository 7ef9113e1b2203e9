"""The differentiable cost model equals DependencyGraph.cost at 0/1 points and has useful gradients."""
import numpy as np
import pytest
import torch

import graphprune
from graphprune.learners.cost import CostModel
from graphprune.testing import PATTERNS, random_keep

IDS = [p.name for p in PATTERNS]


@pytest.mark.parametrize("pattern", PATTERNS, ids=IDS)
@pytest.mark.parametrize("metric", ["macs", "params"])
def test_equals_graph_cost_on_keep_masks(pattern, metric):
    graph = graphprune.inspect(pattern.build().eval(), pattern.make_input())
    model = CostModel(graph, metric)
    rng = np.random.default_rng(0)
    for _ in range(3):
        keep = random_keep(graph, rng)
        want = getattr(graph.cost(keep), metric)
        got = float(model(torch.as_tensor(keep, dtype=torch.float64)))
        assert got == pytest.approx(want, rel=1e-12)
    assert model.dense == pytest.approx(getattr(graph.cost(), metric))


def test_expected_sizes_and_gradient():
    pattern = next(p for p in PATTERNS if p.name == "residual")
    graph = graphprune.inspect(pattern.build().eval(), pattern.make_input())
    model = CostModel(graph)
    p = torch.full((graph.n_units,), 0.5, dtype=torch.float64, requires_grad=True)
    sizes = model.sizes(p)
    g = graph.groups[0]
    c = graph.dim_class[g.anchor]
    assert float(sizes[c]) == pytest.approx(graph.class_size[c] - 0.5 * g.n_units)
    model.ratio(p).backward()
    assert (p.grad > 0).all(), "keeping any unit more costs more"

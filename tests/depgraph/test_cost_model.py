"""One cost polynomial (depgraph/cost_model.py): graph.cost, search.cost.FastCost and the learners' torch
CostModel evaluate the same terms and agree; a latency cost offers the same interface."""
import numpy as np
import pytest
import torch

import graphprune
from graphprune.depgraph.cost_model import CostTerms
from graphprune.learners.cost import CostModel
from graphprune.search.cost import FastCost, LatencyCost
from graphprune.testing import PATTERNS, counted_macs


@pytest.mark.parametrize("pattern", PATTERNS[:8], ids=lambda p: p.name)
def test_numpy_torch_and_the_graph_agree_on_random_keeps(pattern):
    graph = graphprune.inspect(pattern.build().eval(), pattern.make_input())
    rng = np.random.default_rng(0)
    for _ in range(5):
        keep = rng.random(graph.n_units) < rng.uniform(0.2, 1.0)
        cost = graph.cost(keep)
        p = torch.as_tensor(keep, dtype=torch.float64)
        for metric in ("macs", "params"):
            exact = getattr(cost, metric)
            assert FastCost(graph, metric).of(keep) == exact
            assert float(CostModel(graph, metric)(p)) == pytest.approx(exact, rel=1e-12)
            assert graph.cost_terms(metric) is graph.cost_terms(metric), "terms are read once per graph"


def test_torch_evaluation_is_differentiable_in_keep_probabilities():
    p = PATTERNS[0]
    graph = graphprune.inspect(p.build().eval(), p.make_input())
    probs = torch.full((graph.n_units,), 0.5, dtype=torch.float64, requires_grad=True)
    CostModel(graph, "macs").ratio(probs).backward()
    assert probs.grad is not None and (probs.grad > 0).any()


def test_a_dim_without_a_class_reads_one_in_every_evaluation():
    # two classes of sizes 3 and 4; terms 2·s0·s1 and 5·s1·(no class)
    terms = CostTerms([("a", 2.0, [0, 1]), ("b", 5.0, [1, -1])], [("w", [0, -1])], 2, 7.0, "macs")
    sizes = np.array([3.0, 4.0])
    assert terms.numpy(sizes) == 7.0 + 2 * 3 * 4 + 5 * 4
    assert float(terms.torch(torch.as_tensor(sizes))) == terms.numpy(sizes)
    params = CostTerms([], [("w", [0, -1])], 2, 7.0, "params")
    assert params.numpy(sizes) == 3.0 == float(params.torch(torch.as_tensor(sizes)))
    with pytest.raises(ValueError, match="metric"):
        CostTerms([], [], 0, 0.0, "latency")


class _Latency:
    """A latency model stand-in: 1 ms per kept unit plus 2 ms."""

    dense_ms = 0.0

    def __init__(self, n):
        self.dense_ms = n + 2.0

    def predict_ms(self, keep):
        return float(np.sum(keep)) + 2.0


def test_latency_cost_has_the_cost_interface():
    p = PATTERNS[0]
    graph = graphprune.inspect(p.build().eval(), p.make_input())
    keep = graph.full_keep()
    keep[: graph.n_units // 2] = False
    for cost in (FastCost(graph, "macs"), LatencyCost(_Latency(graph.n_units))):
        assert cost.ratio(graph.full_keep()) == 1.0
        assert cost.ratio(keep) == pytest.approx(cost.of(keep) / cost.dense)
        assert 0 < cost.ratio(keep) < 1


def test_unmodeled_macs_are_part_of_every_cost():
    """Ops without a rule are a measured constant that every cost includes (it was lost once when the cost
    polynomial was cached before its constant was known)."""
    class Unruled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = self.a(x).flatten(2)
            z = torch.baddbmm(y, y, y.transpose(1, 2) @ y)  # baddbmm: no rule, counted MACs
            return self.b(z.reshape(1, 8, 6, 6))

    model, x = Unruled().eval(), torch.randn(1, 3, 6, 6)
    graph = graphprune.inspect(model, x)
    assert graph.unmodeled_macs > 0
    assert graph.cost().macs == pytest.approx(counted_macs(model, (x,)))
    assert FastCost(graph, "macs").of(graph.full_keep()) == pytest.approx(graph.cost().macs)

"""Budgets are met: achieved <= requested and within 2 points, for every strategy and pattern."""
import numpy as np
import pytest
import torch

import graphprune
from graphprune import Budget, BudgetError
from graphprune.importance import score_units
from graphprune.search import AllocationConfig, allocate
from graphprune.testing import PATTERNS, randomize_

BIG = [p for p in PATTERNS if p.name in ("residual", "inception_concat", "dense_concat", "flatten_linear",
                                           "inverted_residual_depthwise", "squeeze_excite")]


@pytest.mark.parametrize("strategy", ["global", "uniform"])
@pytest.mark.parametrize("pattern", BIG, ids=[p.name for p in BIG])
@pytest.mark.parametrize("budget", [0.3, 0.5, 0.7])
def test_budget_met_on_tiny_models(pattern, strategy, budget):
    """Tiny models have coarse steps (one channel can be 3% of MACs): never over, close below."""
    graph = graphprune.inspect(randomize_(pattern.build().eval()), pattern.make_input())
    alloc = allocate(graph, score_units(graph, "l2"), Budget.macs(budget), strategy, AllocationConfig(round_to=1))
    assert alloc.ratio <= budget + 1e-9
    assert alloc.ratio >= budget - 0.06, f"achieved {alloc.ratio:.4f} for budget {budget}"


REAL = ["resnet18", "mobilenet_v2", "densenet121"]


@pytest.mark.parametrize("strategy", ["global", "uniform"])
@pytest.mark.parametrize("name", REAL)
def test_budget_within_two_points_on_real_networks(name, strategy):
    import torchvision

    graph = graphprune.inspect(torchvision.models.get_model(name, weights=None).eval(), torch.randn(1, 3, 64, 64))
    scores = score_units(graph, "l2")
    for budget in (0.3, 0.5, 0.7):
        ratio = allocate(graph, scores, Budget.macs(budget), strategy).ratio
        assert budget - 0.02 <= ratio <= budget, f"{name} {strategy}: {ratio:.4f} for {budget}"


def test_params_budget():
    p = PATTERNS[0]
    res = graphprune.prune(p.build().eval(), Budget.params(0.5), p.make_input(), return_result=True, round_to=1)
    assert 0.48 <= res.report.params_ratio <= 0.5
    assert sum(t.numel() for t in res.model.parameters()) == res.report.params


def test_round_to_gives_multiples():
    import torchvision

    model = torchvision.models.resnet18(weights=None).eval()
    res = graphprune.prune(model, 0.5, torch.randn(1, 3, 64, 64), round_to=8, strategy="uniform",
                           return_result=True)
    for name, m in res.model.named_modules():
        if isinstance(m, torch.nn.Conv2d) and name != "conv1":
            assert m.out_channels % 8 == 0, (name, m.out_channels)
    assert res.report.macs_ratio <= 0.5


def test_round_to_floor_is_a_multiple_too():
    """Groups of 16 with round_to=16 are kept whole or cut to 0 → floored; the floor must not be width 1."""
    import models

    model = models.build("resnet20", num_classes=10, in_channels=1).eval()
    example = torch.zeros(1, 1, 28, 28)
    res = graphprune.prune(model, 0.7, example, round_to=16, strategy="uniform", return_result=True)
    widths = {m.out_channels for m in res.model.modules() if isinstance(m, torch.nn.Conv2d)}
    assert all(w % 16 == 0 for w in widths), sorted(widths)
    assert res.report.macs_ratio <= 0.7
    with pytest.raises(BudgetError, match="round_to=16"):
        graphprune.prune(model, 0.5, example, round_to=16, strategy="uniform")


def test_budget_out_of_range_is_refused():
    p = PATTERNS[0]
    for bad in (0.0, -0.1, 1.5, float("nan"), "half"):
        with pytest.raises(BudgetError):
            graphprune.prune(p.build(), bad, p.make_input())


def test_unreachable_budget_says_why():
    p = PATTERNS[0]
    with pytest.raises(BudgetError, match="below what pruning can reach"):
        graphprune.prune(p.build(), 0.001, p.make_input())


def test_ignored_group_keeps_all_channels():
    p = PATTERNS[0]
    res = graphprune.prune(p.build().eval(), 0.8, p.make_input(), ignored_layers=["a"], return_result=True)
    assert res.model.get_submodule("a.0").out_channels == 24


def test_min_units_floor():
    graph = graphprune.inspect(PATTERNS[0].build().eval(), PATTERNS[0].make_input())
    cfg = AllocationConfig(min_units=6)
    keep = allocate(graph, score_units(graph, "l1"), Budget.macs(0.3), "global", cfg).keep
    assert all(keep[g.units].sum() >= 6 for g in graph.groups)


def test_keeps_most_important_units():
    graph = graphprune.inspect(PATTERNS[0].build().eval(), PATTERNS[0].make_input())
    scores = np.arange(graph.n_units, dtype=float)
    keep = allocate(graph, scores, Budget.macs(0.5), "uniform").keep
    for g in graph.groups:
        kept = np.nonzero(keep[g.units])[0]
        assert list(kept) == list(range(g.n_units - len(kept), g.n_units))


# ---- the family machinery the searches reuse -------------------------------------------------------
def test_ratio_family_passes_through_the_ratios_and_projects_onto_the_budget():
    from graphprune.search import allocate_family, ratio_family

    p = PATTERNS[0]
    graph = graphprune.inspect(randomize_(p.build().eval()), p.make_input())
    n = np.array([g.n_units for g in graph.groups])
    rho = np.linspace(0.2, 1.0, len(n))
    counts = ratio_family(rho)(n, None, graph)
    assert np.array_equal(counts(0.5), np.ceil(n * rho - 1e-9).astype(int))
    assert np.array_equal(counts(1.0), n) and not counts(0.0).any()
    scores = score_units(graph, "l2")
    alloc = allocate_family(graph, scores, Budget.macs(0.5), ratio_family(rho), AllocationConfig(round_to=1))
    assert 0.44 <= alloc.ratio <= 0.5


def test_global_raw_ranks_raw_scores_across_groups():
    p = PATTERNS[0]
    graph = graphprune.inspect(randomize_(p.build().eval()), p.make_input())
    scores = np.ones(graph.n_units)
    cheap = graph.groups[0]
    scores[cheap.units] = 0.01  # raw scores say: prune this group first (per-group normalisation would hide it)
    keep = allocate(graph, scores, Budget.macs(0.8), "global_raw", AllocationConfig(round_to=1)).keep
    other = np.concatenate([keep[g.units] for g in graph.groups[1:]])
    assert keep[cheap.units].mean() < other.mean()

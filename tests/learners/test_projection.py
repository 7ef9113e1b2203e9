"""Projection onto the budget: raw-score ranking across groups, admissible learned masks kept as is,
within 2 points on real networks; transfer of unit values between graphs of edited copies."""
import numpy as np
import pytest
import torch

import graphprune
import models
from graphprune import Budget
from graphprune.learners.gates import attach_gates, materialize
from graphprune.learners.projection import project, transfer
from graphprune.passes.remove_block import remove_blocks
from graphprune.search import AllocationConfig, allocate


def graph_of(name, size=8):
    return graphprune.inspect(models.build(name, num_classes=10, in_channels=1), torch.zeros(1, 1, size, size))


def test_learned_strategy_ranks_raw_scores_across_groups():
    """Group A's scores are all larger than group B's: B loses units first (no per-group normalisation)."""
    graph = graph_of("resnet20")
    scores = np.zeros(graph.n_units)
    for i, g in enumerate(graph.groups):
        scores[g.units] = (i + 1) * 10 + np.linspace(0, 1, g.n_units)
    keep = allocate(graph, scores, Budget.macs(0.7), "learned", AllocationConfig(round_to=1)).keep
    kept = [keep[g.units].mean() for g in graph.groups]
    assert kept[0] < kept[-1], "the lowest-scored group is pruned hardest"


def test_admissible_learned_mask_is_kept():
    graph = graph_of("resnet20")
    rng = np.random.default_rng(0)
    scores = rng.random(graph.n_units)
    keep = allocate(graph, scores, Budget.macs(0.5), "learned").keep
    p = project(graph, scores, keep, Budget.macs(0.5))
    assert not p.projected and p.moved_units == 0 and np.array_equal(p.keep, keep)


@pytest.mark.parametrize("name", ["resnet56", "mobilenetv2", "googlenet"])
@pytest.mark.parametrize("budget", [0.3, 0.5, 0.7])
def test_projection_meets_the_budget_within_two_points(name, budget):
    graph = graph_of(name)
    scores = np.random.default_rng(1).random(graph.n_units)
    p = project(graph, scores, np.ones(graph.n_units, dtype=bool), Budget.macs(budget))
    assert p.projected and "over the budget" in p.reason
    assert budget - 0.02 <= p.ratio <= budget
    assert p.moved_units == int((~p.keep).sum())


def test_too_sparse_mask_is_filled_back_and_empty_groups_are_refused():
    graph = graph_of("resnet20")
    learned = np.zeros(graph.n_units, dtype=bool)
    p = project(graph, np.zeros(graph.n_units), learned, Budget.macs(0.5))
    assert p.projected and "floor" in p.reason
    assert 0.48 <= p.ratio <= 0.5


def test_reference_cost_for_a_reduced_graph():
    """After removing blocks, the budget is still a fraction of the original model's MACs."""
    full = graph_of("resnet20")
    reduced = graphprune.inspect(remove_blocks(full.traced.gm, ["add", "add_1"]), torch.zeros(1, 1, 8, 8))
    p = project(reduced, np.ones(reduced.n_units), np.ones(reduced.n_units, dtype=bool), Budget.macs(0.5),
                reference=full.cost().macs)
    assert 0.48 <= p.ratio <= 0.5
    assert reduced.cost(p.keep).macs / full.cost().macs == pytest.approx(p.ratio)


def test_transfer_identity_and_through_materialize_and_block_removal():
    graph = graph_of("resnet20")
    values = np.arange(graph.n_units, dtype=float)
    assert np.array_equal(transfer(graph, values, graph), values)
    gated = attach_gates(graph)
    with torch.no_grad():
        gated.unit_gates.values.uniform_(0.5, 1.5)
    again = graphprune.inspect(materialize(gated), torch.zeros(1, 1, 8, 8))
    assert np.array_equal(transfer(graph, values, again), values)
    reduced = graphprune.inspect(remove_blocks(graph.traced.gm, ["add"]), torch.zeros(1, 1, 8, 8))
    moved = transfer(graph, values, reduced, default=-1)
    assert (moved >= 0).all() and len(moved) == graph.n_units - graph.groups[0].n_units
    assert np.array_equal(moved, values[graph.groups[0].n_units:])

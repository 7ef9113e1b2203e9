"""Latency budgets in allocation and search: the predicted ratio meets the budget, widths sit on the menus."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune import Budget, BudgetError
from graphprune.latency import Target
from graphprune.importance import score_units
from graphprune.search import AllocationConfig, SearchContext, allocate, run_search
from graphprune.search.cost import CombinedCost, FastCost, LatencyCost, budget_cost
from graphprune.search.menus import COARSE_POLICY, HEURISTIC_POLICY, coarse_menu, heuristic_menu, width_menus

from latency_fake import X, FakeLatency, convnet




@pytest.fixture(scope="module")
def graph():
    return graphprune.inspect(convnet(), X)


def counts(graph, keep):
    return [int(keep[g.units].sum()) for g in graph.groups]


def on_menus(graph, keep, latency):
    return all(k in latency.width_menu(gi) for gi, k in enumerate(counts(graph, keep)))


@pytest.mark.parametrize("strategy", ["uniform", "global"])
@pytest.mark.parametrize("budget", [Budget.latency(0.35), Budget.latency(0.6), Budget.ms(3.0)])
def test_latency_budget_is_met_on_the_menus(graph, strategy, budget):
    latency = FakeLatency(graph)
    alloc = allocate(graph, score_units(graph, "l2"), budget, strategy, AllocationConfig(latency=latency))
    predicted = latency.predict_ms(alloc.keep)
    limit = budget.time_ms if budget.time_ms is not None else budget.ratio * latency.dense_ms
    assert predicted <= limit + 1e-12
    assert alloc.ratio == pytest.approx(predicted / latency.dense_ms)
    assert on_menus(graph, alloc.keep, latency), counts(graph, alloc.keep)
    assert "latency steps of ort-cpu-t1-b1-fp32" in alloc.width_policy
    assert counts(graph, alloc.keep) != [g.n_units for g in graph.groups]  # it did prune


def test_ms_above_the_dense_time_keeps_everything(graph):
    latency = FakeLatency(graph)
    alloc = allocate(graph, score_units(graph, "l2"), Budget.ms(latency.dense_ms * 3), "global",
                     AllocationConfig(latency=latency))
    assert alloc.keep.all()


def test_unreachable_latency_budget_names_the_reachable_ms(graph):
    latency = FakeLatency(graph)
    cfg = AllocationConfig(latency=latency, max_prune_ratio=0.5)
    with pytest.raises(BudgetError, match=r"below what pruning can reach here: [0-9.]+ ms \(0\.[0-9]+ of the dense [0-9.]+ ms, predicted on ort-cpu") as info:
        allocate(graph, score_units(graph, "l2"), Budget.ms(latency.dense_ms * 0.05), "uniform", cfg)
    assert "max_prune_ratio" in str(info.value) and "round_to=1" in str(info.value)


def test_a_latency_budget_without_a_latency_model_is_refused(graph):
    with pytest.raises(BudgetError, match="needs a latency model"):
        allocate(graph, score_units(graph, "l2"), Budget.latency(0.5), "global")


def test_combined_budget_meets_every_cap(graph):
    latency = FakeLatency(graph)
    macs = FastCost(graph, "macs")
    scores = score_units(graph, "l2")
    cfg = AllocationConfig(latency=latency, round_to=1)
    for macs_cap, latency_cap in [(0.9, 0.4), (0.3, 0.9), (0.5, 0.5)]:
        keep = allocate(graph, scores, Budget.macs(macs_cap) & Budget.latency(latency_cap), "global", cfg).keep
        assert macs.ratio(keep) <= macs_cap + 1e-12
        assert latency.predict_ms(keep) / latency.dense_ms <= latency_cap + 1e-12
        # the binding cap is used up: the looser one alone would keep more
        assert max(macs.ratio(keep) / macs_cap, latency.predict_ms(keep) / latency.dense_ms / latency_cap) > 0.85


def test_budget_cost_picks_the_budgets_cost(graph):
    latency = FakeLatency(graph)
    assert isinstance(budget_cost(graph, Budget.macs(0.5)), FastCost)
    assert isinstance(budget_cost(graph, Budget.latency(0.5), latency), LatencyCost)
    both = budget_cost(graph, Budget.params(0.5) & Budget.latency(0.25), latency)
    assert isinstance(both, CombinedCost)
    keep = graph.full_keep()
    keep[np.arange(graph.n_units)[graph.groups[0].units][:40]] = False
    expected = 0.5 * max(FastCost(graph, "params").ratio(keep) / 0.5, latency.predict_ms(keep) / latency.dense_ms / 0.25)
    assert both.ratio(keep) == pytest.approx(expected)


def test_combining_one_metric_twice_is_refused():
    with pytest.raises(BudgetError, match="each metric once"):
        Budget.macs(0.5) & Budget.macs(0.4)
    with pytest.raises(BudgetError, match="positive, finite"):
        Budget.ms(0)


# ---- width menus -------------------------------------------------------------------------------------
def test_heuristic_menu():
    assert heuristic_menu(5).tolist() == [1, 2, 3, 4, 5]
    assert heuristic_menu(18).tolist() == [4, 8, 12, 16, 18]
    assert heuristic_menu(40).tolist() == [8, 16, 24, 32, 40]
    assert heuristic_menu(42).tolist()[-2:] == [40, 42]


def test_menus_round_up_and_step_to_the_next_entry():
    coarse = width_menus(np.array([42, 18, 5]), "auto")  # preferred: multiples of 16, small groups whole
    assert coarse.policy == COARSE_POLICY
    assert coarse.ceil(np.array([0, 9, 3]), np.array([1, 1, 4])).tolist() == [16, 16, 5]
    assert coarse.allowed(0, 1).tolist() == [16, 32, 42] and coarse.allowed(2, 1).tolist() == [5]
    menus = coarse.fallback  # finer, where the budget needs them
    assert menus.policy == HEURISTIC_POLICY
    assert menus.ceil(np.array([0, 9, 3]), np.array([1, 1, 4])).tolist() == [8, 12, 4]
    assert menus.ceil(np.array([41, 17, 5]), np.array([1, 1, 1])).tolist() == [42, 18, 5]
    assert menus.next_up(0, 8) == 16 and menus.next_up(0, 40) == 42 and menus.next_up(1, 16) == 18
    assert menus.allowed(0, 9).tolist() == [16, 24, 32, 40, 42]
    exact = width_menus(np.array([42]), 1)
    assert exact.ceil(np.array([13]), np.array([1])).tolist() == [13] and exact.policy == "exact widths"
    with pytest.raises(ValueError, match="round_to must be 'auto' or an int"):
        width_menus(np.array([4]), "fast")


def test_auto_without_latency_uses_the_heuristic(graph):
    for budget in (0.45, 0.9):
        alloc = allocate(graph, score_units(graph, "l2"), Budget.macs(budget), "global")
        menu = coarse_menu if alloc.width_policy == COARSE_POLICY else heuristic_menu
        assert alloc.width_policy in (COARSE_POLICY, HEURISTIC_POLICY) and alloc.ratio <= budget
        for g, k in zip(graph.groups, counts(graph, alloc.keep)):
            assert k in menu(g.n_units), (g.name, k)


def test_coarse_menus_give_way_only_where_the_budget_needs_finer_widths(graph):
    cfg = AllocationConfig()
    reachable = [b for b in np.linspace(0.05, 1.0, 40) if cfg.menus(graph, Budget.macs(b)).policy == COARSE_POLICY]
    assert reachable and reachable[0] > 0.05  # loose budgets keep the coarse widths, tight ones fall back
    assert cfg.menus(graph, Budget.macs(0.05)).policy == HEURISTIC_POLICY


def test_a_latency_model_with_a_bad_menu_is_refused(graph):
    latency = FakeLatency(graph)
    latency.width_menu = lambda gi: np.array([8, 16])  # does not end at the full width
    with pytest.raises(ValueError, match="must be ascending counts .* ending at the group's full width"):
        allocate(graph, score_units(graph, "l2"), Budget.latency(0.5), "global", AllocationConfig(latency=latency))


# ---- the searches use the same cost ------------------------------------------------------------------
@pytest.mark.parametrize("name,options", [("sensitivity", {"levels": (0.3,)}),
                                          ("evolutionary", {"population": 3, "generations": 2}),
                                          ("rl", {"episodes": 2, "batch_episodes": 2})])
def test_every_search_meets_a_latency_budget(graph, name, options):
    torch.set_num_threads(1)
    latency = FakeLatency(graph)
    cfg = AllocationConfig(latency=latency)
    torch.manual_seed(0)
    result = run_search(name, graph, score_units(graph, "l2"), Budget.latency(0.5), cfg,
                        calib_data=[(X, torch.tensor([0]))], options=options)
    assert latency.predict_ms(result.keep) <= 0.5 * latency.dense_ms + 1e-12
    assert result.ratio == pytest.approx(latency.predict_ms(result.keep) / latency.dense_ms)
    assert on_menus(graph, result.keep, latency)


def test_search_context_resolves_ms_and_offers_the_menus(graph):
    latency = FakeLatency(graph, Target("torch-cpu"))  # eager: the table's step ends (no blocked layout first)
    ctx = SearchContext(graph, score_units(graph, "l2"), Budget.ms(latency.dense_ms / 4),
                        AllocationConfig(latency=latency))
    assert ctx.budget.ratio == pytest.approx(0.25) and ctx.budget.time_ms is None
    assert ctx.allowed(0).tolist() == [8, 16, 24, 32, 40, 48, 56, 64]
    assert ctx.round(np.array([9, 1, 1])).tolist() == [16, 8, 8]

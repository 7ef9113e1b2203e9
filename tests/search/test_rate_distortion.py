"""Rate-distortion allocation (search/rate_distortion.py): the Lagrangian is optimal where it lands, the budget
is met, and the strategy runs through prune() to a model equal to its masked reference."""
import itertools

import numpy as np
import pytest
import torch

import graphprune
from graphprune import Budget, BudgetError
from graphprune.evaluate import CandidateEvaluator
from graphprune.importance import score_units
from graphprune.search import AllocationConfig, SearchContext, run_search
from graphprune.search.rate_distortion import (RateDistortionConfig, RDCurve, candidate_lambdas, equal_slope_allocation,
                                               fill_by_slope, lagrangian_choice, rate_distortion_search)
from graphprune.passes import masked_model
from graphprune.testing import PATTERNS, check_rewrite, randomize_

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/search/conftest.py


def _convex_curves(rng, groups=3, points=6, unit_rates=None):
    """Non-increasing convex distortion over widths 0..points-1; rate = cost per unit × width."""
    curves = []
    for g in range(groups):
        drops = np.sort(rng.uniform(0.1, 3.0, points - 1))[::-1]  # decreasing drops: convex
        distortion = np.concatenate([np.cumsum(drops[::-1])[::-1], [0.0]])
        rate = np.arange(points) * (1.0 if unit_rates else rng.uniform(0.5, 2.0))
        curves.append(RDCurve(np.arange(points), rate, distortion))
    return curves


def _brute_force(curves, budget):
    best = None
    for idx in itertools.product(*[range(len(c.counts)) for c in curves]):
        rate = sum(c.rate[i] for c, i in zip(curves, idx))
        if rate <= budget + 1e-12:
            d = sum(c.distortion[i] for c, i in zip(curves, idx))
            best = d if best is None else min(best, d)
    return best


def _totals(curves, idx):
    return (sum(c.rate[i] for c, i in zip(curves, idx)), sum(c.distortion[i] for c, i in zip(curves, idx)))


@pytest.mark.parametrize("seed", range(5))
def test_lagrangian_point_is_optimal_for_the_rate_it_spends(seed):
    """The theorem the allocation rests on: for every λ, no plan of the same or lower rate has less distortion."""
    curves = _convex_curves(np.random.default_rng(seed))
    for lam in [0.0, 0.3, 0.7, 1.0, 1.5, 2.5, 5.0, np.inf]:
        rate, distortion = _totals(curves, lagrangian_choice(curves, lam))
        assert distortion == pytest.approx(_brute_force(curves, rate))


@pytest.mark.parametrize("seed", range(5))
def test_equal_slope_bisection_matches_brute_force(seed):
    curves = _convex_curves(np.random.default_rng(seed))
    total = sum(c.rate[-1] for c in curves)
    for budget in np.linspace(0.0, total, 13):
        fits = lambda idx: _totals(curves, idx)[0] <= budget + 1e-12
        idx, lam = equal_slope_allocation(curves, fits)
        rate, distortion = _totals(curves, idx)
        assert rate <= budget + 1e-12
        # the Lagrangian is optimal for the rate it reaches; it never beats the true optimum at the budget
        assert distortion == pytest.approx(_brute_force(curves, rate))
        assert distortion >= _brute_force(curves, budget) - 1e-9
        # the smallest such λ: every smaller one gives the same plan or one that does not fit
        for smaller in candidate_lambdas(curves):
            if smaller < lam:
                wider = lagrangian_choice(curves, smaller)
                assert np.array_equal(wider, idx) or not fits(wider)


@pytest.mark.parametrize("seed", range(5))
def test_with_unit_costs_the_fill_reaches_the_optimum_and_spends_the_budget_exactly(seed):
    """Convex curves, every step costing 1: equal slope + slope fill is the exact optimum and rate == budget."""
    curves = _convex_curves(np.random.default_rng(seed), unit_rates=True)
    for budget in range(0, sum(len(c.counts) - 1 for c in curves) + 1):
        fits = lambda idx: _totals(curves, idx)[0] <= budget
        idx, _ = equal_slope_allocation(curves, fits)
        idx = fill_by_slope(curves, idx, fits)
        rate, distortion = _totals(curves, idx)
        assert rate == budget
        assert distortion == pytest.approx(_brute_force(curves, budget))


def test_nothing_fits_is_an_error():
    curves = [RDCurve(np.array([1, 2]), np.array([0.5, 1.0]), np.array([1.0, 0.0]))]
    with pytest.raises(ValueError, match="narrowest point"):
        equal_slope_allocation(curves, lambda idx: False)


# ---- on real graphs ------------------------------------------------------------------------------------
def _calib(pattern, n=2):
    x = pattern.make_input()
    return [(pattern.make_input(), torch.randint(0, 10, (x.shape[0],))) for _ in range(n)]


class Branches(torch.nn.Module):
    """Two equal branches; the output reads branch 1 with weight 1 and branch 2 with weight 0.01."""

    def __init__(self):
        super().__init__()
        self.a1, self.a2 = torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.Conv2d(3, 16, 3, padding=1)
        self.b1, self.b2 = torch.nn.Conv2d(16, 4, 1), torch.nn.Conv2d(16, 4, 1)
        with torch.no_grad():
            self.b2.weight.mul_(0.01)

    def forward(self, x):
        return self.b1(torch.relu(self.a1(x))) + self.b2(torch.relu(self.a2(x)))


@pytest.mark.parametrize("unit_order", ["distortion", "scores"])
def test_spends_the_budget_on_the_branch_that_matters(unit_order):
    torch.manual_seed(0)
    model = Branches().eval()
    x = torch.randn(8, 3, 6, 6)
    graph = graphprune.inspect(model, x)
    ctx = SearchContext(graph, score_units(graph, "l2"), Budget.macs(0.6), AllocationConfig(round_to=1),
                        progress=False, evaluator=CandidateEvaluator(graph, lambda m: 0.0, [x]))
    r = rate_distortion_search(ctx, RateDistortionConfig(points=5, unit_order=unit_order))
    counts = {g.name.split(".")[0]: int(r.keep[g.units].sum()) for g in graph.groups}
    assert counts["a1"] >= 14 and counts["a2"] <= 6, counts
    assert 0.6 - 0.02 <= r.ratio <= 0.6
    assert r.ratio == pytest.approx(ctx.ratio_of(r.keep))
    # one measurement per unit (distortion order), P-1 per group, and the final plan's
    per_unit = 32 if unit_order == "distortion" else 0
    assert r.evaluations == per_unit + 2 * 4 + 1
    assert r.info["measured_distortion"] >= 0 and r.info["lambda"] >= 0


@pytest.mark.parametrize("budget", [0.3, 0.55, 0.8])
def test_prune_with_rate_distortion_is_mask_equivalent(budget):
    pattern = next(p for p in PATTERNS if p.name == "residual")
    torch.manual_seed(0)
    model = randomize_(pattern.build().eval())
    x = pattern.make_input()
    res = graphprune.prune(model, budget, x, strategy="rate_distortion", calib_data=_calib(pattern),
                           search_options={"points": 4}, return_result=True)
    assert res.plan.info["strategy"] == "rate_distortion"
    assert budget - 0.08 <= res.report.macs_ratio <= budget + 1e-9  # coarse widths on a tiny model
    keep = res.plan.keep_mask(res.graph)
    with torch.no_grad():  # the pruned model is the dense model with the removed channels zeroed
        got, want = res.model(x), masked_model(res.graph, keep).eval()(x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    check_rewrite(model, x, keep, graph=res.graph)  # and the oracle's MACs / params counts agree


def test_without_calib_data_is_a_clear_error():
    p = PATTERNS[0]
    with pytest.raises(ValueError, match="strategy 'rate_distortion' scores candidates: pass eval_fn"):
        graphprune.prune(p.build().eval(), 0.5, p.make_input(), strategy="rate_distortion")
    # an eval_fn alone leaves no inputs to measure distortion on (a model with BatchNorm fails earlier, asking
    # for calib_data to recalibrate it)
    with pytest.raises(ValueError, match="rate_distortion' measures output distortion on calibration inputs"):
        graphprune.prune(Branches().eval(), 0.5, torch.randn(2, 3, 6, 6), strategy="rate_distortion",
                         eval_fn=lambda m: 0.0)


def test_below_the_floor_is_a_budget_error():
    pattern = PATTERNS[0]
    graph = graphprune.inspect(pattern.build().eval(), pattern.make_input())
    with pytest.raises(BudgetError, match="below what pruning can reach"):
        run_search("rate_distortion", graph, score_units(graph, "l2"), Budget.macs(0.001),
                   calib_data=_calib(pattern), options={"points": 2, "unit_order": "scores"})

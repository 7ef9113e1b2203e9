"""The measure-and-re-plan loop of ``search/latency_budget.py`` on a one-knob model of a plan.

A plan is one of a few *levels* (its predicted time, a fraction of the predicted dense time): a cap gives the
largest level at or below it, as a width menu would.  Measuring a plan gives ``response(predicted)`` of the
dense time, times a scripted noise factor per measurement: deterministic, no timing.  The loop sees only
what ``prune`` hands it (``plan(budget[, finest]) -> (graph, keep, module, cfg)``).
"""
from dataclasses import dataclass, field

import numpy as np
import pytest

import graphprune
from graphprune import Budget, BudgetError
from graphprune.latency import Target
from graphprune.latency.fake import FakeLatencyModel
from graphprune.search.latency_budget import CLOSE, TOLERANCE, meet_latency

from latency_fake import X, convnet

DENSE_MS = 10.0


@dataclass
class Plans:
    """Plans on ``levels`` (``fine`` with ``finest=True``); measured as ``response(predicted) · noise``."""

    levels: list[float]
    response: object = staticmethod(lambda p: p)
    fine: list[float] | None = None
    noise: list[float] = field(default_factory=list)  # factors of successive measurements (then 1)
    floor_refusal: bool = True  # a cap below the lowest level is refused, as the allocation refuses it
    measured: list[float] = field(default_factory=list)
    target = Target()
    dense_ms = DENSE_MS

    def __call__(self, budget, **kw):
        levels = self.fine if kw.get("finest") else self.levels
        below = [lv for lv in levels if lv <= budget.ratio + 1e-12]
        if not below:
            raise BudgetError(f"budget {budget.ratio:.3f} of latency is below what pruning can reach here: "
                              f"{min(levels):.3f}")
        level = max(below)
        keep = np.array([level], dtype=np.float64)  # the loop keys plans by keep.tobytes()
        return None, keep, level, _Cfg(self)

    def predict_ms(self, keep):
        return DENSE_MS * float(keep[0])

    def measure_ms(self, modules, example_inputs):
        factor = self.noise[len(self.measured)] if len(self.measured) < len(self.noise) else 1.0
        ratio = self.response(modules[1]) * factor
        self.measured.append(ratio)
        return [DENSE_MS, DENSE_MS * ratio]


@dataclass
class _Cfg:
    latency: Plans


class WithoutFinest:
    """The same plans offered without the ``finest`` keyword (a caller that has no finer menus)."""

    def __init__(self, plans):
        self.plans = plans

    def __call__(self, budget):
        return self.plans(budget)


def ratio(outcome):
    c = outcome.final
    return c.measured_ms / c.measured_dense_ms


def in_window(value, goal):
    return goal * (1 - CLOSE) <= value <= goal * (1 + TOLERANCE)


FINE = list(np.round(np.arange(0.05, 1.0001, 0.005), 4))


def test_a_model_that_shrinks_slower_than_predicted_converges_into_the_window():
    plans = Plans(FINE, response=lambda p: p ** 0.6)
    _, outcome = meet_latency(plans, Budget.latency(0.5), None, None)
    assert outcome.met and in_window(ratio(outcome), 0.5) and outcome.iterations <= 4
    assert "within the window" in outcome.stop


def test_bracketed_goal_is_found_by_regula_falsi():
    """A kink the secant overshoots: a too-fast and a too-slow plan bracket the goal, then the loop closes in."""
    plans = Plans(FINE, response=lambda p: p if p < 0.6 else 0.6 + 3 * (p - 0.6))
    _, outcome = meet_latency(plans, Budget.latency(0.75), None, None)
    values = [c.measured_ms / c.measured_dense_ms for c in outcome.checks]
    assert any(v < 0.75 * (1 - CLOSE) for v in values) and any(v > 0.75 * (1 + TOLERANCE) for v in values)
    assert outcome.met and in_window(ratio(outcome), 0.75), values


def test_a_cap_that_repeats_the_first_plan_no_longer_stops_the_loop():
    """Measured = 0.9 x predicted: the first plan is 10 % too fast and the factor rule's looser cap gives the
    same plan again (the old loop stopped there, one plan, 10 % fast); now the cap is bisected upwards."""
    levels = [0.3, 0.4, 0.5, 0.56, 0.62, 0.7, 0.8, 0.9, 1.0]
    plans = Plans(levels, response=lambda p: 0.9 * p)
    _, outcome = meet_latency(plans, Budget.latency(0.5), None, None)
    assert outcome.checks[0].measured_ms / DENSE_MS == pytest.approx(0.45)
    assert outcome.met and in_window(ratio(outcome), 0.5)  # the 0.56 plan: measured 0.504
    assert outcome.final.predicted_ms / DENSE_MS == pytest.approx(0.56)


def test_a_gap_in_the_menus_uses_the_finest_menus():
    coarse = [0.2, 0.4, 0.6, 0.8, 1.0]
    plans = Plans(coarse, fine=FINE)
    _, outcome = meet_latency(plans, Budget.latency(0.55), None, None)
    assert outcome.met and in_window(ratio(outcome), 0.55) and outcome.final.finest
    assert not outcome.checks[0].finest


def test_a_gap_without_finer_menus_stops_and_says_why():
    """No plan lands within the window: the loop returns the met plan closest to the goal (never a slower
    one) and names the two plans around the gap."""
    plans = Plans([0.2, 0.4, 0.6, 0.8, 1.0])
    _, outcome = meet_latency(WithoutFinest(plans), Budget.latency(0.55), None, None)
    assert outcome.met and ratio(outcome) == pytest.approx(0.4)
    assert "gap around the goal" in outcome.stop and "0.4" in outcome.stop and "0.6" in outcome.stop
    assert outcome.iterations == 2  # 0.4 and 0.6 measured once each; the caps between repeat them


def test_a_lucky_measurement_is_not_returned_unconfirmed():
    """The first plan measures in the window once (noise 0.85), then 15 % slow: the median of the two misses, so
    the loop tightens instead of returning it."""
    plans = Plans(FINE, response=lambda p: 1.15 * p, noise=[0.85])
    _, outcome = meet_latency(plans, Budget.latency(0.5), None, None)
    first = outcome.checks[0]
    assert in_window(first.pairs[0][1] / DENSE_MS, 0.5) and len(first.pairs) >= 2
    assert outcome.chosen > 0 and in_window(ratio(outcome), 0.5)
    assert len(outcome.final.pairs) >= 2  # the returned plan was confirmed too


def test_a_contradicting_measurement_is_measured_again():
    """Plan 2 is tighter than plan 1 but one noisy measurement says it is slower: it is measured until the
    median of three outvotes the outlier."""
    plans = Plans(FINE, response=lambda p: 1.2 * p, noise=[1.0, 1.6])
    _, outcome = meet_latency(plans, Budget.latency(0.5), None, None)
    second = outcome.checks[1]
    assert len(second.pairs) == 3
    assert second.measured_ms == pytest.approx(1.2 * second.predicted_ms)  # the outlier outvoted
    assert outcome.met and in_window(ratio(outcome), 0.5)


def test_unreachable_budget_is_refused_with_the_numbers():
    plans = Plans([0.3, 0.5, 1.0], response=lambda p: 3 * p)
    with pytest.raises(BudgetError, match=r"not met tightening further is refused: .* below what pruning can "
                                          r"reach.*measured 15\.000 ms \(dense 10\.000 ms, ratio 1\.500\)"):
        meet_latency(plans, Budget.latency(0.5), None, None)


def test_never_met_within_the_plans_is_refused_and_says_so():
    plans = Plans(FINE, response=lambda p: 0.6 + 0.1 * p)  # never below 0.6
    with pytest.raises(BudgetError, match=r"not met \(3 plans measured \(max_iterations\)\)"):
        meet_latency(plans, Budget.latency(0.5), None, None, max_iterations=3)


def test_ms_budget_lands_in_the_window():
    plans = Plans(FINE, response=lambda p: p ** 0.8)
    _, outcome = meet_latency(plans, Budget.ms(4.0), None, None)
    assert outcome.met and in_window(outcome.final.measured_ms, 4.0)


class _Sublinear(FakeLatencyModel):
    """graphprune's deterministic fake, measured as ``dense · (predicted / dense) ** 0.7`` (a whole model
    shrinks slower than its layers)."""

    def measure_ms(self, modules, example_inputs):
        dense, pruned = FakeLatencyModel.measure_ms(self, modules, example_inputs)
        return [dense, dense * (pruned / dense) ** 0.7]


def test_prune_reports_every_plan_and_why_it_stopped():
    res = graphprune.prune(convnet(), Budget.latency(0.6), X, return_result=True,
                           latency_model=lambda graph: _Sublinear(graph, step=4))
    r = res.report
    assert r.latency_iterations == len(r.latency_checks) >= 2 and f"(stopped: {r.latency_stop})" in str(r)
    assert r.latency_checks[0].measured_ms / r.latency_checks[0].measured_dense_ms > 0.6 * (1 + TOLERANCE)
    assert r.measured_ms / r.measured_dense_ms <= 0.6 * (1 + TOLERANCE)
    assert in_window(r.measured_ms / r.measured_dense_ms, 0.6) or "gap around the goal" in r.latency_stop


def test_a_plan_returned_after_a_gap_is_confirmed_first():
    """The 0.6 plan measures 0.5 once (noise): met, closest to the goal.  Before it is returned it is
    measured again; the median of three says 0.6 (too slow), so the 0.4 plan is returned instead."""
    plans = Plans([0.2, 0.4, 0.6, 0.8, 1.0], noise=[1.0, 0.5 / 0.6])
    _, outcome = meet_latency(WithoutFinest(plans), Budget.latency(0.55), None, None)
    six = next(c for c in outcome.checks if c.predicted_ms == pytest.approx(6.0))
    assert six.pairs[0][1] == pytest.approx(5.0) and len(six.pairs) == 3
    assert six.measured_ms == pytest.approx(6.0) and outcome.final.predicted_ms == pytest.approx(4.0)
    assert len(outcome.final.pairs) >= 2 and "gap around the goal" in outcome.stop

"""``prune`` with latency budgets: the fake latency model of tests/search/latency_fake.py stands in for the
measured table; the re-plan loop, the report fields and the refusals are checked end to end."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune import Budget, BudgetError
from graphprune.search import latency_budget
from graphprune.search.menus import COARSE_POLICY, coarse_menu

sys.path.insert(0, str(Path(__file__).parent / "search"))
from latency_fake import X, FakeLatency, convnet  # noqa: E402




def widths(model):
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


class Factory:
    """``fn(graph) -> FakeLatency``, keeping the models it made."""

    def __init__(self, measure_scale=1.0):
        self.measure_scale, self.made = measure_scale, []

    def __call__(self, graph):
        self.made.append(FakeLatency(graph, measure_scale=self.measure_scale))
        return self.made[-1]


@pytest.mark.parametrize("strategy", ["uniform", "global"])
def test_latency_budget_is_met_and_reported(strategy):
    factory = Factory()
    res = graphprune.prune(convnet(), Budget.latency(0.5), X, strategy=strategy, latency_model=factory,
                           return_result=True)
    r, latency = res.report, factory.made[0]
    assert len(factory.made) == 1  # one graph structure: one latency model
    assert r.latency_iterations == 1 and r.target == "ort-cpu-t1-b1-fp32"
    assert r.predicted_ms <= 0.5 * r.predicted_dense_ms and r.latency_ratio <= 0.5
    assert r.measured_ms == pytest.approx(r.predicted_ms) and r.measured_dense_ms == pytest.approx(latency.dense_ms)
    assert all(w % 8 == 0 for w in widths(res.model)[1:]) and r.width_policy.startswith("latency steps")
    assert "measured" in str(r) and res.plan.info["achieved"] == pytest.approx(r.latency_ratio)
    assert str(r).startswith("budget 0.500 of latency") and r.seconds["measure"] > 0


def test_replans_when_the_measurement_disagrees():
    """Measured = 1.2 × predicted: the first plan misses, the cap tightens by the bias, the second meets (4 %
    below: this small net has no plan between it and a too-slow one; the loop looks, then says why it stopped)."""
    factory = Factory(measure_scale=1.2)
    res = graphprune.prune(convnet(), Budget.latency(0.5), X, latency_model=factory, return_result=True)
    r, latency = res.report, factory.made[0]
    assert r.latency_iterations >= 2 and r.latency_checks[1].measured_ms == r.measured_ms  # the second returned
    first = latency.measured[0]
    assert first[1] / first[0] > 0.5 * 1.02  # the first plan missed
    assert r.measured_ms / r.measured_dense_ms <= 0.5 * 1.02
    assert r.predicted_ms / r.predicted_dense_ms <= 0.5 / 1.2 + 1e-9
    assert r.latency_stop  # why it stopped: a gap in the widths near the goal, or the plans ran out


def test_ms_budget_meets_the_absolute_time_and_replans_on_it():
    factory = Factory(measure_scale=1.2)
    res = graphprune.prune(convnet(), Budget.ms(3.0), X, latency_model=factory, return_result=True)
    assert res.report.measured_ms <= 3.0 * 1.02 and res.report.latency_iterations >= 2
    assert str(res.report).startswith("budget 3.000 ms")


def test_ms_above_the_dense_time_returns_the_full_model():
    model = convnet()
    res = graphprune.prune(model, Budget.ms(1e3), X, latency_model=Factory(), return_result=True)
    assert widths(res.model) == widths(model) and res.report.groups_pruned == 0
    assert res.report.latency_iterations == 1


def test_unreachable_ms_budget_names_the_reachable_minimum():
    with pytest.raises(BudgetError, match=r"budget 0.01 ms .* below what pruning can reach here: [0-9.]+ ms"):
        graphprune.prune(convnet(), Budget.ms(0.01), X, latency_model=Factory())


def test_a_measurement_that_never_meets_the_budget_is_refused_with_the_numbers():
    """Measured = 20 × predicted: tightening runs into the floors; the error names measured and predicted ms."""
    with pytest.raises(BudgetError, match=r"not met .* measured [0-9.]+ ms \(dense [0-9.]+ ms.*predicted"):
        graphprune.prune(convnet(), Budget.latency(0.5), X, latency_model=Factory(measure_scale=100.0))


def test_combined_budget_meets_both():
    res = graphprune.prune(convnet(), Budget.macs(0.6) & Budget.latency(0.4), X, latency_model=Factory(),
                           return_result=True)
    assert res.report.macs_ratio <= 0.6 and res.report.latency_ratio <= 0.4 * 1.02
    res = graphprune.prune(convnet(), Budget.macs(0.3) & Budget.latency(0.9), X, latency_model=Factory(),
                           return_result=True)
    assert res.report.macs_ratio <= 0.3 and res.report.latency_ratio <= 0.9


def test_latency_model_instance_is_used_as_is():
    graph = graphprune.inspect(convnet(), X)
    latency = FakeLatency(graph)
    res = graphprune.prune(convnet(), Budget.latency(0.6), X, latency_model=latency, return_result=True)
    assert latency.measured and res.report.measured_ms <= 0.6 * latency.dense_ms * 1.02


def test_default_latency_model_is_the_measured_table_for_the_default_target(monkeypatch):
    seen = []

    def measured(graph, target):
        seen.append(target)
        return FakeLatency(graph)
    monkeypatch.setattr(latency_budget, "_measured", measured)
    graphprune.prune(convnet(), Budget.latency(0.5), X)
    assert seen and seen[0] is None  # _measured turns None into Target() (ORT CPU, 1 thread, batch 1)


def test_macs_budget_with_auto_widths_measures_nothing(monkeypatch):
    def measured(graph, target):
        raise AssertionError("a MACs budget must not build a latency table")
    monkeypatch.setattr(latency_budget, "_measured", measured)
    res = graphprune.prune(convnet(), 0.5, X, return_result=True)
    r = res.report
    assert r.width_policy == COARSE_POLICY and r.measured_ms is None and r.latency_ratio is None
    for w, n in zip(widths(res.model), [64, 56, 40]):
        assert w in coarse_menu(n)
    assert "widths: heuristic" in str(r)


def test_round_to_1_stays_exact():
    res = graphprune.prune(convnet(), 0.5, X, round_to=1, return_result=True)
    assert res.report.width_policy == "exact widths" and res.report.macs_ratio > 0.47


def test_learners_refuse_latency_budgets():
    with pytest.raises(BudgetError, match="learners take MACs or params budgets"):
        graphprune.prune(convnet(), Budget.latency(0.5), X, strategy="slimming", train_data=[(X, torch.tensor([0]))])


def test_bad_latency_model_argument():
    with pytest.raises(TypeError, match="latency_model takes a LatencyModel"):
        graphprune.prune(convnet(), Budget.latency(0.5), X, latency_model=3)


def test_job_report_shows_the_width_policy_and_latency():
    from graphprune.export.report import run_job

    _, report, _ = run_job("convnet", convnet(), X, Budget.latency(0.5), latency_model=Factory(measure_scale=1.2))
    text = report.table()
    assert "0.500 of latency" in text and "widths" in text and "latency steps of ort-cpu-t1-b1-fp32" in text
    assert "latency on ort-cpu-t1-b1-fp32" in text and "plan(s)" in text
    assert report.prune.measured_ms / report.prune.measured_dense_ms <= 0.5 * 1.02


class _ShrinksSlower(FakeLatency):
    """A whole model shrinks slower than its layers: measured ratio = predicted ratio ** 0.7 (as on real CPUs,
    where per-call costs stay), so the model's error grows as widths shrink."""

    def measure_ms(self, modules, example_inputs):
        dense, pruned = (FakeLatency.measure_ms(self, [m], example_inputs)[0] for m in modules)
        self.pairs = getattr(self, "pairs", []) + [(dense, dense * (pruned / dense) ** 0.7)]
        return list(self.pairs[-1])


def test_replans_converge_when_the_error_grows_as_widths_shrink():
    made = []
    res = graphprune.prune(convnet(), Budget.latency(0.5), X, return_result=True,
                           latency_model=lambda graph: made.append(_ShrinksSlower(graph)) or made[-1])
    r = res.report
    assert 2 <= r.latency_iterations <= 4
    assert r.measured_ms / r.measured_dense_ms <= 0.5 * 1.02
    ratios = [pruned / dense for dense, pruned in made[0].pairs]
    assert ratios[0] > 0.5 * 1.02 and ratios[-1] <= 0.5 * 1.02  # missed first, met last


def test_a_plan_far_below_the_budget_is_loosened_towards_it():
    """Measured = 0.7 × predicted: the first plan meets 0.5 with room to spare; the loop loosens until a plan
    lands within 5 % below the budget (or the widths run out), and returns the met plan closest to it."""
    factory = Factory(measure_scale=0.7)
    res = graphprune.prune(convnet(), Budget.latency(0.5), X, latency_model=factory, return_result=True)
    r, pairs = res.report, factory.made[0].measured
    first, final = pairs[0][1] / pairs[0][0], r.measured_ms / r.measured_dense_ms
    assert first < 0.5 * 0.95 and r.latency_iterations > 1
    assert first < final <= 0.5 * 1.02
    assert final == max(m[1] / m[0] for m in pairs if m[1] / m[0] <= 0.5 * 1.02)

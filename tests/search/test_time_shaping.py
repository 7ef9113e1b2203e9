"""Time shaping: under a MACs budget, budget moves from groups slow per MAC to the others while time falls."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune import Budget
from graphprune.importance import normalize_per_group, score_units
from graphprune.latency.fake import FakeLatencyModel
from graphprune.search import AllocationConfig, allocate
from graphprune.search.cost import FastCost, TimeProxyCost
from graphprune.search.time_shaping import IMPORTANCE_SLACK, MIN_KEPT_OF_ALLOCATED, SPEND_SLACK
from graphprune.testing.oracle import check_rewrite

X = torch.randn(1, 3, 32, 32)


def wide_stem_net() -> nn.Module:
    """A 48-channel stem at full resolution with a depthwise conv (many activations per MAC), then two convs
    of 128 channels at 8x8 (few activations per MAC) and a classifier: the shape of a MobileNet's first layers."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 48, 3, padding=1), nn.BatchNorm2d(48), nn.ReLU(),
                         nn.Conv2d(48, 48, 3, padding=1, groups=48), nn.ReLU(),
                         nn.Conv2d(48, 128, 3, stride=4, padding=1), nn.ReLU(),
                         nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10)).eval()


class ActivationFake(FakeLatencyModel):
    """The exact-staircase fake, plus ``per_element`` ms for every activation element the stem group writes
    (like element-wise ops and a depthwise conv, whose time follows the width, not the MACs)."""

    def __init__(self, graph, per_element: float):
        self.stem_classes = list(graph.groups[0].classes)
        self.per_element, self.pixels = per_element, 32 * 32 * 4
        super().__init__(graph, step=8)

    def predict_ms(self, keep):
        width = self.graph.class_sizes(np.asarray(keep, dtype=bool))[self.stem_classes].max()
        return super().predict_ms(keep) + self.per_element * self.pixels * float(width)


def _kept(graph, keep):
    return np.array([int(keep[g.units].sum()) for g in graph.groups])


def _importance(graph, scores, keep):
    return float(normalize_per_group(graph, scores)[keep].sum())


@pytest.fixture(scope="module")
def graph():
    return graphprune.inspect(wide_stem_net(), X)


def test_proxy_moves_budget_off_the_activation_heavy_stem(graph, one_thread):
    scores = score_units(graph, "l2")
    blind = allocate(graph, scores, Budget.macs(0.5), "global", AllocationConfig(time_shaping=False))
    shaped = allocate(graph, scores, Budget.macs(0.5), "global", AllocationConfig())
    proxy, macs = TimeProxyCost(graph), FastCost(graph, "macs")
    assert macs.ratio(blind.keep) <= 0.5 and macs.ratio(shaped.keep) <= 0.5  # the budget still holds
    assert macs.ratio(shaped.keep) >= macs.ratio(blind.keep) - SPEND_SLACK  # and stays spent
    assert proxy.of(shaped.keep) < proxy.of(blind.keep)
    before, after = _kept(graph, blind.keep), _kept(graph, shaped.keep)
    assert after[0] < before[0]  # the stem, slow per MAC, is narrower
    assert after[1:].sum() > before[1:].sum()  # and its MACs went to the others
    assert np.all(after >= np.ceil(MIN_KEPT_OF_ALLOCATED * before))
    assert _importance(graph, scores, shaped.keep) >= (1 - IMPORTANCE_SLACK) * _importance(graph, scores, blind.keep)


def test_latency_model_is_the_time_when_given(graph, one_thread):
    scores = score_units(graph, "l2")
    for per_element in (0.0, 1e-4):
        latency = ActivationFake(graph, per_element)
        blind = allocate(graph, scores, Budget.macs(0.5), "global",
                         AllocationConfig(latency=latency, time_shaping=False))
        shaped = allocate(graph, scores, Budget.macs(0.5), "global", AllocationConfig(latency=latency))
        assert shaped.ratio <= 0.5
        assert latency.predict_ms(shaped.keep) <= latency.predict_ms(blind.keep)
        if per_element:  # the stem's activations make it slow per MAC: it is narrowed
            assert _kept(graph, shaped.keep)[0] < _kept(graph, blind.keep)[0]
            assert latency.predict_ms(shaped.keep) < latency.predict_ms(blind.keep)


@pytest.mark.parametrize("strategy, budget, cfg", [
    ("uniform", Budget.macs(0.5), AllocationConfig()),  # uniform keeps its proportions
    ("learned", Budget.macs(0.5), AllocationConfig()),  # a learner's mask is projected as is
    ("global", Budget.macs(0.5), AllocationConfig(round_to=8)),  # an explicit width step is the user's choice
    ("global", Budget.latency(0.6), AllocationConfig()),  # a latency budget already prices time
])
def test_shaping_leaves_other_settings_alone(graph, strategy, budget, cfg, one_thread):
    from dataclasses import replace

    scores = score_units(graph, "l2")
    latency = ActivationFake(graph, 1e-4)
    cfg = replace(cfg, latency=latency)
    on = allocate(graph, scores, budget, strategy, cfg)
    off = allocate(graph, scores, budget, strategy, replace(cfg, time_shaping=False))
    assert np.array_equal(on.keep, off.keep)


def test_shaped_plan_rewrites_to_the_masked_model(graph, one_thread):
    shaped = allocate(graph, score_units(graph, "l2"), Budget.macs(0.5), "global", AllocationConfig())
    result = check_rewrite(wide_stem_net(), X, shaped.keep)
    assert result.counted_macs <= 0.5 * graph.cost().macs


def test_prune_default_is_shaped(one_thread):
    model = wide_stem_net()
    res = graphprune.prune(model, 0.5, X, return_result=True)
    stem = res.graph.groups[0]
    assert res.report.macs_ratio <= 0.5
    assert len(res.plan.kept.get(stem.name, stem.unit_ids)) < stem.n_units


def test_small_total_gain_is_undone(graph, monkeypatch, one_thread):
    import importlib

    shaping = importlib.import_module("graphprune.search.time_shaping")
    scores = score_units(graph, "l2")
    blind = allocate(graph, scores, Budget.macs(0.5), "global", AllocationConfig(time_shaping=False))
    assert not np.array_equal(allocate(graph, scores, Budget.macs(0.5), "global", AllocationConfig()).keep, blind.keep)
    monkeypatch.setattr(shaping, "MIN_TOTAL_GAIN", 0.99)  # no plan can be 99 % faster: the moves are undone
    assert np.array_equal(allocate(graph, scores, Budget.macs(0.5), "global", AllocationConfig()).keep, blind.keep)

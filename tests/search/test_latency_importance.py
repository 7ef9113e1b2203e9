"""Latency-normalised importance: criterion score per predicted millisecond a unit frees."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune import Budget
from graphprune.importance import normalize_per_group, score_units
from graphprune.search.latency_importance import freed_ms_per_unit, latency_normalised_scores

from latency_fake import X, FakeLatency, convnet




def test_freed_time_is_one_menu_step_per_unit():
    graph = graphprune.inspect(convnet(), X)
    latency = FakeLatency(graph)
    freed = freed_ms_per_unit(graph, latency)
    full = graph.full_keep()
    for gi, g in enumerate(graph.groups):
        keep = full.copy()
        keep[np.arange(graph.n_units)[g.units][-8:]] = False  # the fake's steps are 8 units wide
        expected = (latency.dense_ms - latency.predict_ms(keep)) / 8
        assert expected > 0 and np.allclose(freed[g.units], expected)
    scores = latency_normalised_scores(graph, "l2_latency", latency)
    assert np.allclose(scores, normalize_per_group(graph, score_units(graph, "l2")) / freed)


def test_expensive_units_are_pruned_first_under_global_raw():
    """The 56-wide middle group frees the most time per unit (its convs are the widest): it loses the most."""
    factory = lambda graph: FakeLatency(graph)  # noqa: E731
    res = graphprune.prune(convnet(), Budget.latency(0.5), X, strategy="global_raw", importance="l2_latency",
                           latency_model=factory, return_result=True)
    widths = [m.out_channels for m in res.model.modules() if isinstance(m, nn.Conv2d)]
    kept = np.array(widths) / np.array([64, 56, 40])
    freed = freed_ms_per_unit(res.graph, FakeLatency(res.graph))
    most = int(np.argmax([freed[g.units][0] for g in res.graph.groups]))
    assert most == 1 and kept[1] == kept.min(), kept
    assert res.report.latency_ratio <= 0.5 * 1.02


def test_latency_importance_needs_a_latency_model():
    with pytest.raises(ValueError, match="divides by predicted time: pass target"):
        graphprune.prune(convnet(), 0.5, X, importance="l2_latency")

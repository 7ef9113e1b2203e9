"""The one finishing step (graphprune/finish.py): every strategy, learners included, gets verify +
fence-and-retry and the same report."""
import pytest
import torch
import torch.nn as nn

import graphprune
import graphprune.finish as finish_module
from graphprune.data import synthetic
from graphprune.passes import RewriteError


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()


def _fail_once_at(monkeypatch, node: str) -> list:
    """Make the first rewrite ``finish`` runs fail verification at ``node``; record every call's graph."""
    calls, real = [], finish_module.rewrite

    def rewrite(graph, handover):
        calls.append(graph)
        if len(calls) == 1:
            raise RewriteError(f"node '{node}' has the wrong shape (injected)", node=node)
        return real(graph, handover)
    monkeypatch.setattr(finish_module, "rewrite", rewrite)
    return calls


@pytest.mark.parametrize("strategy, kwargs", [
    ("global", {}),
    ("slimming", {"train_data": synthetic(32, shape=(1, 8, 8)),
                  "search_options": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 16, "progress": False}}),
])
def test_a_failed_verify_is_fenced_and_retried_for_every_kind_of_strategy(monkeypatch, strategy, kwargs):
    calls = _fail_once_at(monkeypatch, "_8")  # the Linear head (fx names Sequential children _0.._8)
    res = graphprune.prune(_net(), 0.6, torch.zeros(1, 1, 8, 8), strategy=strategy, return_result=True,
                           round_to=1, **kwargs)
    assert len(calls) == 2, "one failed rewrite, one retry"
    frozen = [f.reason for f in res.graph.frozen if "frozen after verification failed" in f.reason]
    assert frozen and "injected" in frozen[0]
    assert res.report.macs_ratio <= 0.6 + 1e-9
    with torch.no_grad():
        assert res.model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_a_node_failing_twice_is_not_retried_forever(monkeypatch):
    def always(graph, handover):
        raise RewriteError("node '_8' fails (injected)", node="_8")
    monkeypatch.setattr(finish_module, "rewrite", always)
    with pytest.raises(RewriteError, match="injected"):
        graphprune.prune(_net(), 0.6, torch.zeros(1, 1, 8, 8), round_to=1)


def test_learner_and_allocation_reports_are_built_alike():
    data = synthetic(32, shape=(1, 8, 8))
    learned = graphprune.prune(_net(), 0.6, torch.zeros(1, 1, 8, 8), strategy="slimming", train_data=data,
                               search_options={"epochs": 1, "steps_per_epoch": 1, "progress": False},
                               return_result=True)
    r = learned.report
    dense = graphprune.count_cost(_net(), torch.zeros(1, 1, 8, 8))
    assert (r.dense_macs, r.dense_params) == (dense.macs, dense.params)
    assert r.macs == learned.graph.cost(learned.plan.keep_mask(learned.graph)).macs
    assert r.groups_total == len(learned.graph.groups) and set(r.seconds) == {"learn"}

"""Emptied groups: tie-break by pretrained magnitude, the constant-output check, and revival only where
the learner disconnected the network (a residual branch left constant is the learned function)."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune.learners import BNIsta
from graphprune.learners.base import Export, _revive_if_disconnected
from graphprune.learners.revive import DisconnectedWarning, emptied_groups, output_is_constant, with_tiebreak
from graphprune.passes import rewrite


def chain():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        x = x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return self.head(x.mean((2, 3)))


def test_tiebreak_orders_zeros_below_every_kept_unit():
    scores = np.array([0.0, 0.5, 0.0, 0.01, 0.0])
    pre = np.array([0.1, 9.0, 0.7, 1.0, 0.3])
    out = with_tiebreak(scores, pre)
    assert out[1] == 0.5 and out[3] == 0.01, "positive scores unchanged"
    assert out[[0, 2, 4]].max() < 0.01 and out[2] > out[4] > out[0] > 0
    assert np.array_equal(with_tiebreak(scores, None), scores)


def test_output_is_constant_sees_a_dead_layer():
    net = chain()
    x = (torch.zeros(1, 1, 8, 8),)
    assert not output_is_constant(net, x)
    with torch.no_grad():
        net[4].weight.zero_()
    assert output_is_constant(net, x) and not net.training
    assert not output_is_constant(nn.Embedding(5, 3), (torch.tensor([[1, 2]]),)), "integer inputs: never"


def _zero_group(model, bn_name):
    """Graph, scores with the group of ``bn_name`` at 0 (γ zeroed in the model too), full keep."""
    with torch.no_grad():
        model.get_submodule(bn_name).weight.zero_()
    x = torch.randn(1, 1, 8, 8)
    graph = graphprune.inspect(model, x)
    scores = np.ones(graph.n_units)
    group = next(g for g in graph.groups if any(f"@{bn_name}.weight" in str(d) for d in g.parameters))
    scores[group.units] = 0.0
    keep = graph.full_keep()
    return graph, scores, keep, (x,)


def _export(graph, scores, calls, source_model):
    saved = {n: m.weight.detach().clone() for n, m in source_model.named_modules() if isinstance(m, nn.BatchNorm2d)}

    def revive(gm, g, units):
        calls.append(len(units))
        with torch.no_grad():
            for name, w in saved.items():
                gm.get_submodule(name).weight.copy_(torch.where(w == 0, torch.ones_like(w), w))
        return len(units)
    return Export(graph.traced.gm, graph, scores, scores > 0, revive=revive)


def test_a_cut_group_left_constant_is_revived():
    model = chain()
    graph, scores, keep, x = _zero_group(model, "4")
    assert len(emptied_groups(graph, scores, keep)) == 1
    calls = []
    pruned = rewrite(graph, keep)
    assert output_is_constant(pruned, x)
    pruned, revived = _revive_if_disconnected(_export(graph, scores, calls, model), graph, scores, keep, pruned, x)
    assert calls == [8] and len(revived) == 1
    assert not output_is_constant(pruned, x)


def test_a_residual_branch_left_constant_is_the_learned_function_and_stays():
    model = Residual().eval()
    graph, scores, keep, x = _zero_group(model, "bn1")
    assert len(emptied_groups(graph, scores, keep)) == 1
    calls = []
    pruned = rewrite(graph, keep)
    out, revived = _revive_if_disconnected(_export(graph, scores, calls, model), graph, scores, keep, pruned, x)
    assert calls == [] and revived == [] and out is pruned


def test_without_a_revive_hook_the_user_is_warned():
    model = chain()
    graph, scores, keep, x = _zero_group(model, "4")
    exp = Export(graph.traced.gm, graph, scores, scores > 0)
    with pytest.warns(DisconnectedWarning, match="cannot revive"):
        _revive_if_disconnected(exp, graph, scores, keep, rewrite(graph, keep), x)


def test_bn_ista_that_empties_every_group_keeps_pretrained_channels_and_a_live_network(tiny_data):
    """λ large enough to zero every γ in one step: the floors and the fill keep zero-γ channels only, so
    the exported net is constant; the learner gives them their pretrained γ/β back and says so."""
    model = chain()
    pretrained = model[4].weight.detach().abs().clone()
    learner = BNIsta(epochs=1, steps_per_epoch=1, batch_size=16, lam=1e4, sparse_lr=0.01, progress=False)
    plan = learner.fit(model, tiny_data, 0.5, torch.zeros(1, 1, 8, 8))
    scores, _ = learner.state()
    assert (scores == 0).all()
    r = learner.result
    assert len(plan.info["revived_groups"]) == len(r.graph.groups) == len(r.removed["revived"])
    assert not output_is_constant(r.model, (torch.zeros(1, 1, 8, 8),))
    kept = plan.kept.get(next(g.name for g in r.graph.groups if "3.weight" in g.name))
    assert kept is not None
    top = set(np.argsort(-pretrained.numpy())[:len(kept)].tolist())
    assert set(kept) == top, "the floor of an emptied group keeps its largest pretrained scales"
    assert r.macs_ratio <= 0.5 + 1e-9
    assert torch.equal(model[4].weight.abs(), pretrained), "the user's model is unchanged"

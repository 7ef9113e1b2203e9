"""Evaluating a model gives every module its own train/eval flag back (not the root's)."""
import torch
import torch.nn as nn

from graphprune.evaluate import classification_eval_fn
from graphprune.module_modes import eval_mode
from graphprune.train import evaluate


def _mixed():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(3))
    net(torch.randn(2, 1, 6, 6))
    net.train()
    net[1].eval()  # frozen BatchNorm inside a model in train mode
    return net


def _flags(net):
    return [m.training for m in net.modules()]


def test_eval_mode_restores_each_flag_even_on_error():
    net = _mixed()
    before = _flags(net)
    try:
        with eval_mode(net):
            assert not any(_flags(net))
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert _flags(net) == before


def test_top1_loops_keep_a_frozen_batchnorm_frozen():
    net = _mixed()
    before = _flags(net)
    data = [(torch.randn(4, 1, 6, 6), torch.randint(0, 3, (4,)))]
    evaluate(net, data)
    assert _flags(net) == before
    classification_eval_fn(data)(net)
    assert _flags(net) == before

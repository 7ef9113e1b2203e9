"""bench/learners.py: fine-tuned networks are evaluated with BatchNorm statistics of their final weights."""
import copy
import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn as nn

from graphprune.data import synthetic
from graphprune.learners import recalibrate_from_loader
from graphprune.train import evaluate, make_loader

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_learners", REPO / "bench" / "learners.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NOTE: dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def _tiny_net_with_small_scales() -> nn.Module:
    """conv-BN-ReLU twice; the first BN's γ is 0.01, as BN-ISTA leaves its surviving channels."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    with torch.no_grad():
        net[1].weight.fill_(0.01)
    return net


def test_finetune_and_evaluate_reestimates_bn_after_finetuning():
    bench = _bench()
    data = synthetic(64, shape=(1, 8, 8), num_classes=4)
    test_loader = make_loader(data, 32, shuffle=False)
    s = bench.Sizing(batch=16, lr=0.05)
    net = _tiny_net_with_small_scales()
    recalibrate_from_loader(net, make_loader(data, s.batch, True, 0), bench.BN_BATCHES)
    stale, acc = bench.finetune_and_evaluate(net, data, test_loader, 1, s, seed=0)
    fresh = copy.deepcopy(net)
    recalibrate_from_loader(fresh, make_loader(data, s.batch, True, 0), bench.BN_BATCHES)
    for bn, ref in ((net[1], fresh[1]), (net[4], fresh[4])):
        assert torch.equal(bn.running_var, ref.running_var) and torch.equal(bn.running_mean, ref.running_mean)
    assert acc == evaluate(net, test_loader)
    assert 0.0 <= stale <= 1.0


def test_sensitivity_method_searches_on_training_images_and_meets_the_budget():
    import graphprune
    import models
    bench = _bench()
    torch.manual_seed(0)
    teacher = models.build("lenet5", num_classes=10, in_channels=1).eval()
    train = synthetic(32, shape=(1, 28, 28), num_classes=10)
    result = bench.prune_one_shot("sensitivity", teacher, 0.5, train, bench.Sizing(batch=16), seed=0)
    assert result.plan.info["strategy"] == "sensitivity"
    ratio = graphprune.count_cost(result.model, bench.EXAMPLE).macs / graphprune.count_cost(teacher, bench.EXAMPLE).macs
    assert 0.47 <= ratio <= 0.5 + 1e-9

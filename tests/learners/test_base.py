"""The shared learner pipeline: BN re-estimation, non-finite losses, per-epoch log and plot."""
import json

import pytest
import torch

import models
from graphprune.learners import HSN, recalibrate_from_loader
from graphprune.learners.learn_log import LearnLog
from graphprune.train import make_loader


def test_recalibrate_bn_is_the_plain_mean_over_batches(tiny_data):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.BatchNorm2d(3))
    loader = make_loader(tiny_data, 8, shuffle=False)
    assert recalibrate_from_loader(net, loader, 2) == 1
    with torch.no_grad():
        means = [net[0](b).mean((0, 2, 3)) for b, _ in list(loader)[:2]]
    assert torch.allclose(net[1].running_mean, sum(means) / 2, atol=1e-6)
    assert net[1].momentum == 0.1 and net.training


def test_non_finite_loss_is_an_error(tiny_data):
    learner = HSN(epochs=1, steps_per_epoch=1, batch_size=8, progress=False)
    learner.step = lambda x, y: {"task": float("nan")}
    learner.setup = lambda graph, budget: None
    with pytest.raises(FloatingPointError, match="lower the learning rates"):
        learner.fit(models.build("resnet20", num_classes=10, in_channels=1), tiny_data, 0.5)


def test_log_writes_json_every_epoch_and_a_plot(tmp_path):
    log = LearnLog("x", {"lr": 0.1}, str(tmp_path / "l.json"), str(tmp_path / "l.png"))
    log.append(1, {"ce": 1.0}, 0.1, 0.9, 0.5, 1.0)
    assert json.loads((tmp_path / "l.json").read_text())["epochs"][0]["macs_ratio"] == 0.9
    log.append(2, {"ce": 0.5}, 0.2, 0.7, None, 1.0)
    assert log.plot() == str(tmp_path / "l.png") and (tmp_path / "l.png").stat().st_size > 0

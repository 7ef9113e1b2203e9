"""train / finetune / evaluate on data-free synthetic blobs (fast, no installed data needed)."""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from graphprune.data import synthetic
from graphprune.train import TrainConfig, distillation_loss, evaluate, finetune, finetune_config, make_loader, train


def _tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 10))


def _loaders(n_train: int = 320, batch: int = 32):
    shape = (1, 14, 14)
    train_set = synthetic(n_train, shape=shape, noise_seed=1)
    test_set = synthetic(200, shape=shape, noise_seed=2)
    return make_loader(train_set, batch, seed=0), make_loader(test_set, 100, shuffle=False)


def _quiet(**changes) -> TrainConfig:
    return TrainConfig(progress=False, **changes)


def test_training_learns_and_logs_every_epoch(tmp_path):
    train_loader, test_loader = _loaders()
    net = _tiny_net()
    before = evaluate(net, test_loader)
    log_path = tmp_path / "log.json"
    log = train(net, train_loader, _quiet(epochs=3, lr=0.05, log_path=str(log_path)), test_loader)
    assert before < 0.5 and log.final_accuracy > 0.9
    assert [r.epoch for r in log.epochs] == [1, 2, 3]
    assert log.epochs[-1].train_loss < log.epochs[0].train_loss
    written = json.loads(log_path.read_text())
    assert written["config"]["epochs"] == 3 and len(written["epochs"]) == 3
    assert written["epochs"][-1]["test_acc"] == pytest.approx(log.final_accuracy)


def test_same_seed_gives_identical_weights():
    train_loader, _ = _loaders(n_train=96)
    first, second = _tiny_net(), _tiny_net()
    for net in (first, second):
        train(net, train_loader, _quiet(epochs=2, lr=0.05, seed=7))
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_cosine_schedule_starts_at_lr_and_halves_midway():
    train_loader, _ = _loaders(n_train=64)
    log = train(_tiny_net(), train_loader, _quiet(epochs=2, lr=0.2))
    assert [r.lr for r in log.epochs] == pytest.approx([0.2, 0.1])


def test_evaluate_restores_training_mode_and_counts_exactly():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    inputs = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0]]).view(3, 1, 2, 2)
    dataset = torch.utils.data.TensorDataset(inputs, torch.tensor([0, 1, 1]))
    net.train()
    assert evaluate(net, make_loader(dataset, 2, shuffle=False)) == pytest.approx(2 / 3)
    assert net.training


def test_distillation_loss_reduces_to_cross_entropy_and_vanishes_on_the_teacher():
    logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    ce = F.cross_entropy(logits, labels)
    torch.testing.assert_close(distillation_loss(logits, labels), ce)
    torch.testing.assert_close(distillation_loss(logits, labels, torch.randn(8, 10), alpha=0.0), ce)
    # Student == teacher: the KL term is zero, so only (1 - α)·CE remains.
    torch.testing.assert_close(distillation_loss(logits, labels, logits, alpha=0.25), 0.75 * ce)
    teacher = torch.randn(8, 10)
    T = 3.0
    kl = (F.softmax(teacher / T, 1) * (F.log_softmax(teacher / T, 1) - F.log_softmax(logits / T, 1))).sum(1).mean()
    torch.testing.assert_close(distillation_loss(logits, labels, teacher, alpha=1.0, temperature=T), T * T * kl)


def test_finetune_with_teacher_uses_kd_and_recovers():
    train_loader, test_loader = _loaders()
    teacher = _tiny_net()
    train(teacher, train_loader, _quiet(epochs=3, lr=0.05))
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student[0].weight.mul_(torch.tensor([1.0, 0.0, 1.0, 0.0]).view(4, 1, 1, 1))  # "prune" two filters
    config = finetune_config(epochs=2, lr=0.02, progress=False)
    log = finetune(student, train_loader, config, teacher=teacher, test_loader=test_loader, kd_alpha=0.7, kd_T=2.0)
    assert log.config["kd_alpha"] == 0.7 and log.config["kd_temperature"] == 2.0
    assert log.final_accuracy > 0.9
    assert not teacher.training


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError):
        TrainConfig(kd_alpha=1.5)
    assert finetune_config().lr == 0.01 and finetune_config(epochs=1).epochs == 1


def test_teacher_on_another_device_is_refused_with_the_fix():
    train_loader, _ = _loaders(n_train=64)
    teacher = _tiny_net(1).to("meta")
    with pytest.raises(ValueError, match=r"teacher is on meta.*teacher\.to\(device\)"):
        finetune(_tiny_net(), train_loader, finetune_config(epochs=1, progress=False), teacher=teacher)


def test_batches_follow_the_model_device():
    from graphprune.train import device_of

    assert device_of(_tiny_net()) == torch.device("cpu")
    assert device_of(nn.ReLU()) == torch.device("cpu")
    _, test_loader = _loaders(n_train=64)
    # CPU-only machine: the check is that batches are moved with .to(device), which is a no-op here.
    assert 0.0 <= evaluate(_tiny_net(), test_loader) <= 1.0

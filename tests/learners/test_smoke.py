"""Every learner on the reference CIFAR networks (8×8 inputs, one step) and one torchvision model:
the plan meets the MACs budget (≤ β, within 2 points), the pruned network runs, the plan round-trips."""
import pytest
import torch
from torch.utils.data import TensorDataset

import graphprune
import models
from graphprune import Plan
from graphprune.learners import GAL, HSN, BNIsta, NetworkSlimming

FAST = dict(epochs=1, steps_per_epoch=1, batch_size=4, progress=False, bn_batches=1)
LEARNERS = {
    "bn-ista": lambda: BNIsta(**FAST, lam=None),
    "slimming": lambda: NetworkSlimming(**FAST),
    "gal": lambda: GAL(**FAST, lam=0.5, mask_lr=0.1),
    "hsn": lambda: HSN(**FAST),
}


def check(learner, model, data, budget, example):
    plan = learner.fit(model, data, budget, example)
    r = learner.result
    assert budget - 0.02 <= r.macs_ratio <= budget + 1e-9, f"{learner.name}: {r.macs_ratio:.4f} for {budget}"
    counted = graphprune.count_cost(r.model, example).macs / graphprune.count_cost(model, example).macs
    assert counted == pytest.approx(r.macs_ratio, rel=1e-6)
    with torch.no_grad():
        assert r.model.eval()(example).shape == model.eval()(example).shape
    assert Plan.from_json(plan.to_json()).kept == plan.kept
    return r


@pytest.mark.parametrize("learner", sorted(LEARNERS))
@pytest.mark.parametrize("name", ["resnet56", "mobilenetv2", "googlenet"])
def test_reference_networks(name, learner, tiny_data):
    torch.manual_seed(0)
    model = models.build(name, num_classes=10, in_channels=1)
    check(LEARNERS[learner](), model, tiny_data, 0.5, torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_torchvision_resnet18(learner):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    data = TensorDataset(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))
    check(LEARNERS[learner](), model, data, 0.6, torch.zeros(1, 3, 32, 32))

"""HSN: Gumbel-sigmoid straight-through gates; the main network stays frozen; the layer-wise scaling
factors move under the hyper-gradient; the plan meets the budget."""
import pytest
import torch

import models
from graphprune.learners import HSN
from graphprune.learners.hsn import gumbel_sigmoid
from graphprune.testing import randomize_


def test_gumbel_sigmoid_is_hard_forward_soft_backward():
    z = torch.zeros(100, requires_grad=True)
    g = gumbel_sigmoid(z, 0.5)
    v = g.detach()
    assert torch.all((v.abs() < 1e-6) | ((v - 1).abs() < 1e-6)), "0/1 up to the straight-through rounding"
    g.sum().backward()
    assert (z.grad >= 0).all() and (z.grad > 0).float().mean() > 0.9  # saturated samples may give 0


@pytest.fixture(scope="module")
def fitted(tiny_data):
    model = randomize_(models.build("resnet20", num_classes=10, in_channels=1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learner = HSN(epochs=2, steps_per_epoch=3, batch_size=8, reg_weight=5.0, hsn_lr=0.05, hyper_lr=0.2,
                  progress=False)
    learner.fit(model, tiny_data, 0.5)
    return learner, model, before


def test_scaling_factors_move_under_the_hyper_gradient(fitted):
    learner, _, _ = fitted
    assert len(learner.alpha_history) == 5  # every step after the first
    assert not torch.allclose(learner.alpha, torch.ones_like(learner.alpha))
    assert (learner.alpha >= 0).all()


def test_main_network_is_frozen(fitted):
    learner, model, before = fitted
    gm = learner.graph.traced.gm
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for name, p in learner.gated.gm.named_parameters():
        if not name.startswith("gp_"):
            assert torch.equal(p, gm.get_parameter(name))


def test_plan_meets_the_budget(fitted):
    learner, _, _ = fitted
    r = learner.result
    assert 0.48 <= r.macs_ratio <= 0.5 + 1e-9
    assert r.plan.info["learner"] == "hsn"
    assert all(p.requires_grad for p in r.model.parameters()), "the result can be fine-tuned"


def test_regulariser_pulls_expected_macs_toward_the_budget(fitted):
    learner, _, _ = fitted
    ratios = [e["macs_ratio"] for e in learner.result.log.epochs]
    assert ratios[-1] < 1.0
    p = torch.ones(learner.graph.n_units, dtype=torch.float64)
    assert float(learner.regulariser(p)) > 0

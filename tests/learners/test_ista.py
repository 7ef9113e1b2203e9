"""BN-ISTA: exact zeros from the proximal step; gates for units without BN; γ-W rescaling keeps the
function; Network Slimming never zeroes exactly but its plan still meets the budget."""
import json

import numpy as np
import pytest
import torch

import graphprune
import models
from graphprune.learners import BNIsta, NetworkSlimming
from graphprune.learners.gates import attach_gates
from graphprune.learners.ista import bn_scales
from graphprune.learners.rescale import rescale_groups, undo_rescale
from graphprune.testing import PATTERNS, randomize_


def resnet():
    return randomize_(models.build("resnet20", num_classes=10, in_channels=1))


def test_ista_produces_exact_zeros(tiny_data):
    learner = BNIsta(epochs=1, steps_per_epoch=2, batch_size=16, lam=40.0, sparse_lr=0.01, progress=False)
    learner.fit(resnet(), tiny_data, 0.5)
    scores, learned = learner.state()
    assert (scores == 0).any(), "γ starts in [0.5, 1.5]; two shrinks of 0.4 zero the smallest"
    modules = dict(learner.gated.gm.named_modules())
    gammas = np.concatenate([modules[s.module].weight.detach().numpy()[s.units >= 0] for s in learner.scales])
    assert (gammas == 0.0).any(), "the BN scales themselves are exactly zero"
    r = learner.result
    assert r.macs_ratio <= 0.5 + 1e-9 and r.log.epochs[0]["sparsity"] > 0


def test_calibrated_lambda_does_not_zero_units_spanning_several_batchnorms(tiny_data):
    """MobileNetV2 units span several BatchNorms (expand + depthwise, residual streams); λ calibrated on the
    units' L2 norm shrank every γ past its value and zeroed 49 of 52 BatchNorms. Calibrated on the
    largest |γ| of a unit, the undefended shrinkage stops at the budget's cut."""
    torch.manual_seed(0)
    model = randomize_(models.build("mobilenetv2", num_classes=10, in_channels=1))
    learner = BNIsta(epochs=1, steps_per_epoch=2, batch_size=16, lam=None, sparse_lr=0.1, progress=False)
    learner.fit(model, tiny_data, 0.5, torch.zeros(1, 1, 8, 8))
    modules = dict(learner.gated.gm.named_modules())
    dead = [s.module for s in learner.scales if not modules[s.module].weight.detach()[s.units >= 0].any()]
    assert len(dead) <= len(learner.scales) // 4, f"{len(dead)}/{len(learner.scales)} BatchNorms all zero"
    assert learner.result.projection.learned_ratio > 0.2


def test_calibrated_lambda_is_budget_cut_over_schedule(tiny_data):
    learner = BNIsta(epochs=1, steps_per_epoch=2, batch_size=16, lam=None, sparse_lr=0.1, progress=False)
    learner.fit(resnet(), tiny_data, 0.5)
    assert learner.lam > 0
    assert learner.result.macs_ratio <= 0.5 + 1e-9


def test_units_without_bn_get_gates_under_the_same_prox(tiny_data):
    """flatten_linear: the conv feeding the linear head has no BN; its units are gated and shrunk."""
    pattern = next(p for p in PATTERNS if p.name == "flatten_linear")
    x = pattern.make_input()
    data = torch.utils.data.TensorDataset(torch.randn(16, *x.shape[1:]), torch.randint(0, 10, (16,)))
    learner = BNIsta(epochs=1, steps_per_epoch=2, batch_size=8, lam=40.0, sparse_lr=0.01, progress=False)
    learner.fit(pattern.build(), data, 0.6, example_inputs=x)
    assert (~learner.has_bn).any()
    gates = learner.gated.unit_gates.values.detach().numpy()[~learner.has_bn]
    assert (gates < 1).all() and (gates >= 0).all()


def test_gamma_w_rescaling_keeps_the_function_and_undoes():
    model = resnet().eval()
    x = torch.randn(2, 1, 8, 8)
    graph = graphprune.inspect(model, x)
    gated = attach_gates(graph)
    gated.gm.eval()
    with torch.no_grad():
        before = gated(x)
        r = rescale_groups(gated, bn_scales(graph, gated.gm), 4.0)
        assert len(r.bn_factor) == 9 and not r.refused
        assert torch.allclose(gated(x), before, rtol=1e-5, atol=1e-6)
        bn = gated.gm.get_submodule("layer1.0.bn1")
        assert torch.allclose(bn.weight, 4.0 * model.layer1[0].bn1.weight)
        undo_rescale(gated, r)
        assert torch.allclose(bn.weight, model.layer1[0].bn1.weight)


def test_rescaling_refuses_relu6_paths():
    model = randomize_(models.build("mobilenetv2", num_classes=10, in_channels=1)).eval()
    graph = graphprune.inspect(model, torch.randn(1, 1, 8, 8))
    gated = attach_gates(graph)
    r = rescale_groups(gated, bn_scales(graph, gated.gm), 2.0)
    assert any("not positively homogeneous" in why for why in r.refused)
    expand = "features.2.conv.0.0.weight:0"  # 1x1 expand -> BN -> ReLU6 -> depthwise: must be refused
    assert any(why.startswith(expand) for why in r.refused)


def test_result_batchnorm_statistics_are_re_estimated(tiny_data):
    on = BNIsta(epochs=1, steps_per_epoch=1, batch_size=16, lam=5.0, progress=False, bn_batches=2)
    off = BNIsta(epochs=1, steps_per_epoch=1, batch_size=16, lam=5.0, progress=False, bn_batches=0)
    torch.manual_seed(0)
    on.fit(resnet(), tiny_data, 0.6)
    torch.manual_seed(0)
    off.fit(resnet(), tiny_data, 0.6)
    a, b = on.result.model.get_submodule("bn1"), off.result.model.get_submodule("bn1")
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.running_mean, b.running_mean)


def test_ista_with_rescaling_runs(tiny_data):
    learner = BNIsta(epochs=1, steps_per_epoch=1, batch_size=16, lam=1.0, rescale=2.0, progress=False)
    learner.fit(resnet(), tiny_data, 0.7)
    assert learner.rescaling is None, "undone at export"
    assert learner.result.macs_ratio <= 0.7 + 1e-9


def test_slimming_has_no_exact_zeros_and_projects(tiny_data, tmp_path):
    learner = NetworkSlimming(epochs=1, steps_per_epoch=2, batch_size=16, lam=1e-2, progress=False,
                              log_path=str(tmp_path / "log.json"), plot_path=str(tmp_path / "log.png"))
    plan = learner.fit(resnet(), tiny_data, 0.5, eval_data=tiny_data)
    scores, _ = learner.state()
    assert (scores > 0).all()
    r = learner.result
    assert r.projection.projected and 0.48 <= r.macs_ratio <= 0.5
    assert plan.info["learner"] == "slimming" and plan.info["achieved"] == pytest.approx(r.macs_ratio)
    log = json.loads((tmp_path / "log.json").read_text())
    assert {"losses", "sparsity", "macs_ratio", "accuracy"} <= set(log["epochs"][0])
    assert log["final"]["projection" if "projection" in log["final"] else "moved_units"] is not None
    assert (tmp_path / "log.png").stat().st_size > 0


def test_pruned_result_equals_plan_applied_to_trained_weights(tiny_data):
    """With BN re-estimation off, the result is exactly the plan applied to the trained (exported) weights."""
    learner = BNIsta(epochs=1, steps_per_epoch=1, batch_size=16, lam=5.0, progress=False, bn_batches=0)
    plan = learner.fit(resnet(), tiny_data, 0.6)
    r = learner.result
    x = torch.randn(2, 1, 8, 8)
    again = graphprune.passes.rewrite(r.graph, plan.keep_mask(r.graph)).eval()
    with torch.no_grad():
        assert torch.allclose(r.model.eval()(x), again(x))
    counted = graphprune.count_cost(r.model, x).macs / graphprune.count_cost(resnet(), x).macs
    assert counted == pytest.approx(r.macs_ratio, rel=1e-6)


def test_zeroed_channels_read_by_a_linear_head_are_folded_so_the_result_is_the_learned_network(tiny_data):
    """γ = 0 channels output relu(β) > 0 into avgpool → linear: dropping them alone would shift the logits."""
    from graphprune.learners.gates import materialize
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    with torch.no_grad():
        net[1].weight.copy_(torch.linspace(0.1, 1.5, 8))
        net[1].bias.fill_(0.5)
    learner = BNIsta(epochs=1, steps_per_epoch=2, batch_size=16, lam=40.0, sparse_lr=0.01, progress=False,
                     bn_batches=0, tolerance=1.0)
    plan = learner.fit(net, tiny_data, 1.0, torch.zeros(1, 1, 8, 8))
    zeroed = int((learner.gated.gm.get_submodule("1").weight == 0).sum())
    assert 0 < zeroed < 8
    assert plan.info["folded_constants"]["folded_columns"] == zeroed
    learned = materialize(learner.gated).eval()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(learner.result.model.eval()(x), learned(x), atol=1e-5)

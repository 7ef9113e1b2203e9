"""GAL: FISTA masks reach exact zeros, zero blocks/branches are removed by the new passes, the plan meets
the budget; discriminator shape; ablation switches."""
import pytest
import torch

import models
from graphprune.learners import GAL, Discriminator
from graphprune.testing import randomize_


def resnet():
    torch.manual_seed(0)
    return randomize_(models.build("resnet20", num_classes=10, in_channels=1))


def test_discriminator_is_three_fc_layers_128_256_128():
    d = Discriminator(10)
    widths = [m.out_features for m in d.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 256, 128, 1]
    assert d(torch.randn(4, 10)).shape == (4,)


def test_fista_masks_hit_exact_zero_and_blocks_are_removed(tiny_data):
    learner = GAL(epochs=1, steps_per_epoch=2, batch_size=16, lam=0.5, lam_structure=10.0, mask_lr=0.1,
                  structure_lr=0.1, progress=False)
    learner.fit(resnet(), tiny_data, 0.5)
    r = learner.result
    assert r.removed["blocks"], "λ_s·η_s = 1 per step zeroes block masks"
    assert r.macs_ratio <= 0.5 + 1e-9 and r.macs_ratio >= 0.5 - 0.06
    names = {n.name for n in r.model.graph.nodes}
    assert not names & set(r.removed["blocks"])
    assert r.model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("optimizer", ["fista", "sgd"])
def test_masks_stay_nonnegative_with_the_calibrated_lambda(tiny_data, optimizer):
    """λ calibrated to the schedule drives undefended masks to 0 at the last step; momentum (FISTA) or a
    subgradient step (SGD) must not carry them past 0, which would flip the channel's sign while its
    score |m| ranks it as kept."""
    learner = GAL(epochs=1, steps_per_epoch=6, batch_size=4, mask_lr=0.2, mask_optimizer=optimizer,
                  progress=False)
    learner.fit(resnet(), tiny_data, 0.5)
    channel, structure = learner.gated.unit_gates.values, learner.struct_mask
    assert (channel >= 0).all() and (structure >= 0).all()
    if optimizer == "fista":  # the crossing itself is pinned in test_prox.py
        assert all(g["nonnegative"] for g in learner.opt_m.param_groups)
        assert (channel == 0).any(), "undefended masks reach exact zeros"


def test_structure_step_defaults_to_a_tenth_of_the_mask_step(tiny_data):
    learner = GAL(epochs=1, steps_per_epoch=1, batch_size=16, mask_lr=0.1, progress=False)
    learner.fit(resnet(), tiny_data, 0.7)
    lrs = [g["lr"] for g in learner.opt_m.param_groups]
    assert lrs == [0.1, pytest.approx(0.01)]


def test_label_free(tiny_data):
    """GAL never reads labels: shuffled labels give the same masks."""
    a = GAL(epochs=1, steps_per_epoch=1, batch_size=16, lam=0.2, mask_lr=0.05, progress=False)
    b = GAL(epochs=1, steps_per_epoch=1, batch_size=16, lam=0.2, mask_lr=0.05, progress=False)
    a.fit(resnet(), tiny_data, 0.7)
    x, y = tiny_data.tensors
    b.fit(resnet(), torch.utils.data.TensorDataset(x, y.flip(0)), 0.7)
    assert torch.equal(a.gated.unit_gates.values, b.gated.unit_gates.values)


@pytest.mark.parametrize("overrides", [{"mask_optimizer": "sgd"}, {"adversarial": False},
                                       {"structures": ("channel",)}])
def test_ablations_run_and_meet_the_budget(tiny_data, overrides):
    learner = GAL(epochs=1, steps_per_epoch=1, batch_size=16, mask_lr=0.05, progress=False, **overrides)
    learner.fit(resnet(), tiny_data, 0.5)
    assert learner.result.macs_ratio <= 0.5 + 1e-9
    if overrides.get("adversarial") is False:
        assert "d" not in learner.result.log.epochs[0]["losses"]


def test_branches_of_googlenet_are_masked_and_removable(tiny_data):
    model = randomize_(models.build("googlenet", num_classes=10, in_channels=1))
    learner = GAL(epochs=1, steps_per_epoch=1, batch_size=4, lam=0.0, lam_structure=50.0, mask_lr=0.1,
                  structure_lr=0.1, structures=("branch",), progress=False)
    learner.fit(model, tiny_data, 0.6)
    assert len(learner.branches) == 36
    r = learner.result
    assert r.removed["branches"] and r.macs_ratio <= 0.6 + 1e-9
    assert r.macs_ratio >= 0.6 - 0.02

"""module_state: the pruned model carries the user's per-module train/eval flags, every name of the user's
model (unused buffers and submodules included), and the user's hooks only when asked (keep_hooks)."""
import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune.testing import randomize_


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12)
        self.block = nn.Sequential(nn.Conv2d(12, 12, 1), nn.ReLU())
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.block(torch.relu(self.bn2(self.conv2(x))))
        return self.fc(x.mean((2, 3)))


def _x():
    return torch.randn(4, 3, 8, 8)


def _stats(bn):
    return bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()


def _keep_half(model, x):
    graph = graphprune.inspect(model, x)
    keep = np.ones(graph.n_units, dtype=bool)
    for g in graph.groups:
        keep[g.first_unit: g.first_unit + g.n_units // 2] = False
    return graph, keep


# ---- 1. train/eval flags, module by module ----------------------------------------------------------

def test_frozen_batchnorm_in_train_mode_stays_frozen():
    model = randomize_(ConvNet()).train()
    model.bn1.eval()  # fine-tuning setup: frozen statistics
    x = _x()
    pruned = graphprune.prune(model, 1.0, x)
    assert pruned.training and not pruned.bn1.training and pruned.bn2.training
    before_user, before_pruned = _stats(model.bn1), _stats(pruned.bn1)
    want, got = model(x), pruned(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for a, b in zip(before_user, _stats(model.bn1)):
        assert torch.equal(a, b)
    for a, b in zip(before_pruned, _stats(pruned.bn1)):
        assert torch.equal(a, b)
    torch.testing.assert_close(pruned.bn2.running_mean, model.bn2.running_mean)  # both trained once


def test_every_module_gets_the_flag_of_the_module_with_its_name():
    model = randomize_(ConvNet()).eval()
    model.block.train()
    model.block[1].eval()
    pruned = graphprune.prune(model, 0.5, _x(), round_to=1)
    user = dict(model.named_modules())
    for name, module in pruned.named_modules():
        if name in user:
            assert module.training == user[name].training, name
    assert pruned.block.training and pruned.get_submodule("block.0").training \
        and not pruned.get_submodule("block.1").training


# ---- 3. hooks ----------------------------------------------------------------------------------------

def _double_input(module, args):
    return (args[0] * 2,)


def _add_one(module, args, output):
    return output + 1


def _hooked():
    model = randomize_(ConvNet()).eval()
    handles = [model.register_forward_pre_hook(_double_input), model.fc.register_forward_hook(_add_one),
               model.block.register_forward_hook(_add_one)]
    return model, handles


def test_hooks_are_not_carried_over_by_default_and_a_warning_lists_them():
    model, handles = _hooked()
    x = _x()
    with pytest.warns(UserWarning, match="hooks were not carried over") as caught:
        pruned = graphprune.prune(model, 1.0, x)
    message = str(next(w.message for w in caught if "hooks" in str(w.message)))
    assert "<root> (forward_pre_hook)" in message and "fc (forward_hook)" in message \
        and "block (forward_hook)" in message
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in pruned.modules())
    for h in handles:
        h.remove()
    torch.testing.assert_close(pruned(x), model(x), rtol=1e-5, atol=1e-5)  # the hook-free model


def test_keep_hooks_registers_the_users_hooks_on_the_pruned_modules():
    model, handles = _hooked()
    x = _x()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = graphprune.prune(model, 1.0, x, keep_hooks=True, return_result=True, output="graph")
    pruned = result.model
    from graphprune.passes import MODULE_STATE_KEY

    torch.testing.assert_close(pruned(x), model(x), rtol=1e-5, atol=1e-5)
    assert list(pruned._forward_pre_hooks.values()) == [_double_input]
    assert list(pruned.fc._forward_hooks.values()) == [_add_one]
    assert {n.target for n in pruned.graph.nodes if n.op == "call_module"} >= {"block", "fc"}
    assert pruned.meta[MODULE_STATE_KEY].hooks and not result.report.dropped
    for h in handles:  # the pruned model's hooks are its own registrations
        h.remove()
    assert list(pruned.fc._forward_hooks.values()) == [_add_one]


def test_keep_hooks_with_pruning_matches_the_masked_reference_with_hooks():
    model, _ = _hooked()
    x = _x()
    result = graphprune.prune(model, 0.5, x, round_to=1, keep_hooks=True, return_result=True)
    keep = result.plan.keep_mask(result.graph)
    masked = graphprune.masked_model(result.graph, keep)
    masked.register_forward_pre_hook(_double_input)
    masked.fc.register_forward_hook(_add_one)
    masked.block.register_forward_hook(_add_one)
    torch.testing.assert_close(result.model(x), masked(x), rtol=1e-4, atol=1e-5)


# ---- 5. every name of the user's model ----------------------------------------------------------------

class WithUnused(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.spare = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))  # never called
        self.fc = nn.Linear(8, 5)
        self.register_buffer("count", torch.tensor(7))  # never read
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 8).view(1, 8, 1, 1))  # read as a tensor
        self.register_buffer("offset", torch.linspace(-1, 1, 5))  # read through Python (.view)
        self.register_buffer("scratch", torch.zeros(3), persistent=False)
        self.plain = torch.ones(5)  # a plain tensor attribute: not in the state_dict

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x))) * self.scale
        return self.fc(y.mean((2, 3))) + self.offset.view(1, -1) + self.plain


def test_budget_one_keeps_every_state_dict_entry_under_its_name():
    model = randomize_(WithUnused()).eval()
    x = _x()
    result = graphprune.prune(model, 1.0, x, return_result=True)
    pruned, want = result.model, model.state_dict()
    got = pruned.state_dict()
    assert set(got) == set(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert type(pruned.get_submodule("spare.1")) is nn.BatchNorm2d and not result.report.dropped
    torch.testing.assert_close(pruned(x), model(x))
    assert all(got[k].data_ptr() != want[k].data_ptr() for k in want)  # the pruned model owns its tensors


def test_unused_names_survive_pruning_unchanged_in_size():
    model = randomize_(WithUnused()).eval()
    x = _x()
    pruned = graphprune.prune(model, 0.4, x, round_to=1)
    assert pruned.conv.out_channels < 8, "the used conv is pruned"
    got, want = pruned.state_dict(), model.state_dict()
    assert set(got) == set(want)
    for k in ("count", "offset", "spare.0.weight", "spare.1.running_var"):
        assert torch.equal(got[k], want[k]), k
    assert tuple(got["scale"].shape) == (1, pruned.conv.out_channels, 1, 1)


def test_tied_unused_parameter_stays_tied():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.out = nn.Linear(6, 6), nn.Linear(6, 3)
            self.head = nn.Linear(6, 6)
            self.head.weight = self.fc.weight  # tied, head never called

        def forward(self, x):
            return self.out(torch.relu(self.fc(x)))

    pruned = graphprune.prune(Tied(), 1.0, torch.randn(2, 6))
    assert pruned.head.weight is pruned.fc.weight


def test_a_module_under_two_names_stays_one_module():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.out = nn.Linear(6, 8), nn.Linear(8, 3)
            self.alias = self.fc  # never called under this name

        def forward(self, x):
            return self.out(torch.relu(self.fc(x)))

    model = Shared()
    pruned = graphprune.prune(model, 0.5, torch.randn(2, 6), round_to=1)
    assert pruned.alias is pruned.fc and pruned.fc.out_features < 8
    assert set(pruned.state_dict()) == set(model.state_dict())

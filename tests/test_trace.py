"""trace: ``self.training`` reads stay dynamic (or are warned about), and tracing, shape propagation and
verification never write the user's tensors."""
import io
import sys
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import graphprune
from graphprune.testing import randomize_
from graphprune.trace import trace


# ---- 2. training reads --------------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.dropout(torch.relu(self.conv(x)), 0.5, self.training)


class DropNet(nn.Module):
    """Functional dropout fed by ``self.training``, in the root and in a traced-through submodule."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Block(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = self.block(self.stem(x))
        y = F.dropout(y.mean((2, 3)), p=0.3, training=self.training)
        return self.fc(F.dropout(y, 0.1, not self.training))  # negated read: active in eval only


def _same_seed(model, x, seed=3):
    torch.manual_seed(seed)
    return model(x)


@pytest.mark.parametrize("user_mode", ["train", "eval"])
def test_functional_dropout_follows_the_pruned_models_mode(user_mode):
    model = DropNet().train(user_mode == "train")
    x = torch.randn(2, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: every training read is linked
        pruned = graphprune.prune(model, 1.0, x)
    assert pruned.training == model.training
    for mode in (True, False):
        model.train(mode)
        pruned.train(mode)
        torch.testing.assert_close(_same_seed(pruned, x), _same_seed(model, x))
        varies = not torch.equal(_same_seed(pruned, x, 1), _same_seed(pruned, x, 2))
        assert varies  # train: the two dropouts; eval: the negated one


def test_training_reads_become_nodes_of_the_owning_module():
    traced = trace(DropNet(), torch.randn(2, 3, 8, 8))
    reads = sorted(n.target for n in traced.gm.graph.nodes if n.op == "get_attr" and n.target.endswith("training"))
    assert reads == ["block.training", "training", "training"]
    code = traced.gm.code
    assert "training = False" not in code and "training = True" not in code


class BlockNet(DropNet):
    """DropNet's layers; only the block's own dropout reads ``self.training``."""

    def forward(self, x):
        return self.fc(self.block(self.stem(x)).mean((2, 3)))


def test_pruned_dropout_model_matches_the_masked_reference_and_drops_in_train_mode():
    model = randomize_(BlockNet()).train()
    x = torch.randn(2, 3, 8, 8)
    result = graphprune.prune(model, 0.5, x, return_result=True)
    pruned = result.model
    assert pruned.block.training
    assert not torch.equal(_same_seed(pruned, x, 1), _same_seed(pruned, x, 2))
    pruned.eval()
    masked = graphprune.masked_model(result.graph, result.plan.keep_mask(result.graph)).eval()
    torch.testing.assert_close(pruned(x), masked(x), rtol=1e-4, atol=1e-5)
    assert torch.equal(_same_seed(pruned, x, 1), _same_seed(pruned, x, 2))


class NoisyBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        if self.training:  # control flow: one graph cannot hold both
            x = x + 0.1 * torch.randn_like(x)
        return self.conv(x)


class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.noisy = NoisyBlock()

    def forward(self, x):
        return self.noisy(x)


def test_control_flow_on_training_is_warned_naming_the_module():
    with pytest.warns(UserWarning, match=r"module 'noisy' \(NoisyBlock\) runs different Python code in train and "
                                         r"eval mode.*always runs its eval-mode code"):
        trace(Noisy().train(), torch.randn(1, 4, 3, 3))


def test_control_flow_on_training_in_a_leaf_is_not_warned():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        traced = trace(Noisy().train(), torch.randn(1, 4, 3, 3), leaf_modules=[NoisyBlock])
    assert [n.target for n in traced.gm.graph.nodes if n.op == "call_module"] == ["noisy"]


# ---- 4. the user's tensors are never written ----------------------------------------------------------

class Mutating(nn.Module):
    """A forward that writes its own state: a Python counter, an in-place buffer update, a clamp of a
    parameter, and an ``.item()`` (no meta kernel: shape propagation falls back to real tensors)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)
        self.gain = nn.Parameter(torch.tensor(-0.5))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("total", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        self.total.add_(x.mean())
        self.gain.data.clamp_(min=0.25)
        y = torch.relu(self.bn(self.conv(x))) * self.gain
        return self.fc(y.mean((2, 3))) * (x.abs().max().item() > -1)


def _snapshot(model):
    state = {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()}
    versions = {k: v._version for k, v in model.state_dict(keep_vars=True).items()}
    return state, versions


@pytest.mark.parametrize("budget", [1.0, 0.5])
def test_prune_never_writes_the_users_tensors(budget):
    model = randomize_(Mutating()).train()
    x = torch.randn(2, 3, 8, 8)
    state, versions = _snapshot(model)
    graphprune.prune(model, budget, x)
    for k, v in model.state_dict(keep_vars=True).items():
        assert torch.equal(v, state[k]), f"{k} changed"
        assert v._version == versions[k], f"{k} was written in place"


def test_pruned_model_has_the_users_buffer_values_and_its_own_storage():
    model = randomize_(Mutating()).eval()
    x = torch.randn(2, 3, 8, 8)
    pruned = graphprune.prune(model, 1.0, x)
    assert int(pruned.calls) == 0 and float(pruned.total) == 0.0
    pruned(x)  # the pruned model updates its own buffer, not the user's
    assert float(model.total) == 0.0 and float(pruned.total) != 0.0


class StderrProbe(nn.Module):
    """A leaf that records which ``sys.stderr`` is installed while shape propagation runs it."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(sys.stderr)
        return x


class Probed(Mutating):
    def __init__(self):
        super().__init__()
        self.probe = StderrProbe()

    def forward(self, x):
        return super().forward(self.probe(x))


def test_shape_propagation_prints_nothing_and_never_swaps_stderr(capfd):
    original = sys.stderr
    traced = trace(Probed(), torch.randn(2, 3, 8, 8), leaf_modules=[StderrProbe])
    seen = traced.gm.probe.seen
    assert len(seen) == 2, "a meta run that fails on .item(), then the real-tensor run"
    assert all(s is original for s in seen), "sys.stderr is process-wide: other threads would lose output"
    assert sys.stderr is original
    assert "Traceback" not in capfd.readouterr().err

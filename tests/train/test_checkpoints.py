"""Checkpoint formats: registry state_dicts for baselines, pickled modules for pruned nets."""
from __future__ import annotations

import pytest
import torch
import torch.fx

import models
from graphprune.train import load_checkpoint, load_module, save_checkpoint, save_module


def test_registry_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = models.build("resnet20", in_channels=1).to(memory_format=torch.channels_last).eval()
    path = tmp_path / "r20.pt"
    save_checkpoint(path, net, "resnet20", {"in_channels": 1}, meta={"test_accuracy": 0.5})
    loaded = load_checkpoint(path)
    assert (loaded.model, loaded.kwargs, loaded.meta["test_accuracy"]) == ("resnet20", {"in_channels": 1}, 0.5)
    assert all(t.is_contiguous() for t in loaded.state_dict.values())
    rebuilt = loaded.build().eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), net(x))


def test_module_file_keeps_a_changed_architecture(tmp_path):
    net = models.build("lenet5").eval()
    traced = torch.fx.symbolic_trace(net)
    # A "pruned" net: conv1 keeps 10 of 20 filters, conv2 the matching 10 inputs. No factory builds this.
    traced.set_submodule("features.0", torch.nn.Conv2d(1, 10, 5))
    traced.set_submodule("features.3", torch.nn.Conv2d(10, 50, 5))
    path = tmp_path / "pruned.pt"
    save_module(path, traced)
    loaded = load_module(path)
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), traced(x))
    assert loaded.get_submodule("features.3").in_channels == 10
    with pytest.raises(Exception):
        load_checkpoint(path)  # not a weights-only registry checkpoint

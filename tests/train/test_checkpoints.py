"""Checkpoint formats: registry state_dicts for baselines, pickled modules for pruned nets (trusted only)."""
from __future__ import annotations

import pickle

import pytest
import torch
import torch.fx

import models
from graphprune.train import load_checkpoint, load_module, save_checkpoint, save_module
from graphprune.train.checkpoint import NotACheckpointError, UntrustedFileError


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


def _pruned_lenet() -> torch.fx.GraphModule:
    traced = torch.fx.symbolic_trace(models.build("lenet5").eval())
    # A "pruned" net: conv1 keeps 10 of 20 filters, conv2 the matching 10 inputs. No factory builds this.
    traced.set_submodule("features.0", torch.nn.Conv2d(1, 10, 5))
    traced.set_submodule("features.3", torch.nn.Conv2d(10, 50, 5))
    return traced


def test_module_file_keeps_a_changed_architecture(tmp_path):
    traced = _pruned_lenet()
    path = tmp_path / "pruned.pt"
    save_module(path, traced)
    loaded = load_module(path, trusted=True)
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), traced(x))
    assert loaded.get_submodule("features.3").in_channels == 10
    with pytest.raises(NotACheckpointError, match="not a weights-only"):
        load_checkpoint(path)  # not a weights-only registry checkpoint


def test_load_module_needs_trust(tmp_path):
    path = tmp_path / "pruned.pt"
    save_module(path, _pruned_lenet())
    with pytest.raises(UntrustedFileError, match=r"runs code stored in the file.*trusted=True.*--trust-file"):
        load_module(path)


def _hooked_lenet() -> torch.nn.Module:
    net = models.build("lenet5")
    net.features[0].register_forward_hook(lambda module, args, out: out)  # a lambda: unpicklable
    return net


@pytest.mark.parametrize("save_bad", [
    lambda path: save_module(path, _hooked_lenet()),
    lambda path: save_checkpoint(path, models.build("lenet5"), "lenet5", meta={"made_by": lambda: 0}),
], ids=["save_module", "save_checkpoint"])
def test_failed_save_keeps_the_old_file(tmp_path, save_bad):
    path = tmp_path / "net.pt"
    save_checkpoint(path, models.build("lenet5"), "lenet5")
    before = path.read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_bad(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["net.pt"]

"""save_pruned / load_pruned: one weights-only-readable file, atomic pairs, no code run without trust."""
from __future__ import annotations

import io
import pathlib
import pickle

import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune.export import PRUNED_FORMAT, UntrustedFileError, load_pruned, plan_path, save_pruned
from graphprune.plan import Plan, PlanError


class _Net(nn.Module):
    """Conv-BN-ReLU twice with a residual add, then a linear head: coupled channels to prune."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU(),
                                  nn.Conv2d(24, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.body(x))
        return self.head(x.mean((2, 3)))


class _RunsCode:
    """Unpickling this writes ``marker``: a stand-in for whatever a crafted file would do."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.write_text, (self.marker, "code from the file ran")


def _randomize(net: nn.Module) -> nn.Module:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.2, 1.5)
    return net.eval()


@pytest.fixture
def pruned():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 12, 12)
    result = graphprune.prune(_randomize(_Net()), 0.5, x, return_result=True)
    assert result.plan.kept, "the test needs a plan that prunes something"
    return result, x


def test_one_weights_only_file_with_plan_beside(tmp_path, pruned):
    result, _ = pruned
    path = save_pruned(result.model, tmp_path / "m.pt", result.plan)
    payload = torch.load(path, weights_only=True)  # readable without unpickling any code
    assert payload["format"] == PRUNED_FORMAT
    assert Plan.from_json(payload["plan"]) == result.plan
    assert isinstance(payload["module_pickle"], bytes)
    assert payload["state_dict"].keys() == result.model.state_dict().keys()
    assert Plan.load(plan_path(path)) == result.plan
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "m.pt.plan.json"]


def test_trusted_round_trip(tmp_path, pruned):
    result, x = pruned
    loaded = load_pruned(save_pruned(result.model, tmp_path / "m.pt", result.plan), trusted=True)
    assert type(loaded) is type(result.model)  # the class prune returned (here the user's own: output="auto")
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model(x))


def test_safe_rebuild_from_a_fresh_instance_equals_the_pruned_model(tmp_path, pruned):
    result, x = pruned
    path = save_pruned(result.model, tmp_path / "m.pt", result.plan)
    torch.manual_seed(123)  # other initial weights: every weight must come from the file
    rebuilt = load_pruned(path, model=_Net().eval(), example_inputs=x)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), result.model(x), rtol=0, atol=1e-6)
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in result.model.parameters())


def test_untrusted_load_refuses_and_says_how_to_opt_in(tmp_path, pruned):
    result, _ = pruned
    path = save_pruned(result.model, tmp_path / "m.pt", result.plan)
    with pytest.raises(UntrustedFileError, match=r"trusted=True.*model=.*example_inputs"):
        load_pruned(path)


def test_crafted_files_run_nothing_without_trust(tmp_path, pruned):
    result, x = pruned
    marker = tmp_path / "marker"
    plain = tmp_path / "plain.pt"
    torch.save(_RunsCode(marker), plain)
    with pytest.raises(UntrustedFileError, match="trusted=True"):
        load_pruned(plain)
    with pytest.raises(UntrustedFileError, match="not a weights-only"):
        load_pruned(plain, model=_Net().eval(), example_inputs=x)
    # A pruned/2 file whose module pickle is hostile: the safe rebuild never unpickles it.
    evil = io.BytesIO()
    torch.save(_RunsCode(marker), evil)
    container = tmp_path / "container.pt"
    torch.save({"format": PRUNED_FORMAT, "state_dict": result.model.state_dict(), "plan": result.plan.to_json(),
                "module_pickle": evil.getvalue()}, container)
    rebuilt = load_pruned(container, model=_Net().eval(), example_inputs=x)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), result.model(x), rtol=0, atol=1e-6)
    assert not marker.exists()
    # The crafted file is live: opting in does run it (which is why it needs trusted=True).
    with pytest.raises(TypeError):
        load_pruned(plain, trusted=True)
    assert marker.exists()


def test_old_format_pickle_loads_only_when_trusted(tmp_path, pruned):
    result, x = pruned
    old = tmp_path / "old.pt"
    torch.save(result.model, old)  # what save_pruned wrote before graphprune.pruned/2
    with pytest.raises(UntrustedFileError):
        load_pruned(old)
    with torch.no_grad():
        assert torch.equal(load_pruned(old, trusted=True)(x), result.model(x))


def test_failed_save_leaves_the_old_pair_intact(tmp_path, pruned):
    result, _ = pruned
    path = save_pruned(result.model, tmp_path / "m.pt", result.plan)
    before = path.read_bytes(), plan_path(path).read_bytes()
    hooked = load_pruned(path, trusted=True)
    hooked.get_submodule("head").register_forward_hook(lambda module, args, out: out)  # unpicklable
    other_plan = Plan({name: ids[:1] for name, ids in result.plan.kept.items()})
    with pytest.raises(pickle.PicklingError, match="nothing was written"):
        save_pruned(hooked, path, other_plan)
    assert (path.read_bytes(), plan_path(path).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "m.pt.plan.json"]


def test_failed_plan_write_leaves_both_old_files(tmp_path, pruned, monkeypatch):
    result, _ = pruned
    path = save_pruned(result.model, tmp_path / "m.pt", result.plan)
    before = path.read_bytes(), plan_path(path).read_bytes()
    original_write_text = pathlib.Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.name.startswith(".m.pt.plan.json"):
            raise OSError(28, "No space left on device")
        return original_write_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    with pytest.raises(OSError, match="No space"):
        save_pruned(result.model, path, Plan({name: ids[:1] for name, ids in result.plan.kept.items()}))
    assert (path.read_bytes(), plan_path(path).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "m.pt.plan.json"]


def test_save_without_plan_drops_the_stale_plan_and_cannot_rebuild(tmp_path, pruned):
    result, x = pruned
    path = save_pruned(result.model, tmp_path / "m.pt", result.plan)
    save_pruned(result.model, path)
    assert not plan_path(path).exists()
    with pytest.raises(PlanError, match="without a plan"):
        load_pruned(path, model=_Net().eval(), example_inputs=x)


def test_rebuild_on_another_architecture_is_a_plan_error(tmp_path, pruned):
    result, x = pruned
    path = save_pruned(result.model, tmp_path / "m.pt", result.plan)
    other = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()).eval()
    with pytest.raises(PlanError):
        load_pruned(path, model=other, example_inputs=x)
    with pytest.raises(ValueError, match="example_inputs"):
        load_pruned(path, model=_Net().eval())

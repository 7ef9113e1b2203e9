"""Odd-but-real user models (bench/odd_inputs.py found these): pruned exactly, or refused by name with the way out.

The oracle here is independent of graphprune's masked reference: the user's own model with the pruned
channels zeroed at their consumer (a pre-hook), because the masked reference is built from the same traced
copy as the pruned model and shares its blind spots (e.g. slicing a parametrization's originals).
"""
import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrizations, parametrize

import graphprune
from graphprune.testing import check_rewrite, randomize_


class MLP(nn.Module):
    def __init__(self, d=16, h=32):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(d, h), nn.Linear(h, h), nn.Linear(h, 4)

    def forward(self, x):
        return self.l3(F.relu(self.l2(F.relu(self.l1(x)))))


class GlobalNorm(nn.Module):
    """Mixes rows: slicing the original does not slice the result."""

    def forward(self, w):
        return w / w.norm()


PARAMETRIZE = {
    "custom_global_norm": lambda m: parametrize.register_parametrization(m.l1, "weight", GlobalNorm()),
    "weight_norm": lambda m: (parametrizations.weight_norm(m.l1), parametrizations.weight_norm(m.l2)),
    "spectral_norm": lambda m: parametrizations.spectral_norm(m.l1),
    "orthogonal": lambda m: parametrizations.orthogonal(m.l2),
}


def _kept_rows(pruned_w: torch.Tensor, full_w: torch.Tensor) -> list[int]:
    """Which rows of ``full_w`` the pruned weight kept (each pruned row equals exactly one original row)."""
    kept = []
    for row in pruned_w:
        hits = [i for i, r in enumerate(full_w) if torch.allclose(r, row, rtol=1e-6, atol=1e-7)]
        assert len(hits) == 1, "a pruned row is not a row of the weight the user's model computes"
        kept.append(hits[0])
    return kept


def _zeroed_at(model: nn.Module, consumer: str, kept: list[int]) -> nn.Module:
    """A copy of the user's model whose ``consumer`` sees only the ``kept`` input features."""
    ref = copy.deepcopy(model).eval()
    mask = torch.zeros(getattr(ref, consumer).in_features)
    mask[kept] = 1.0
    getattr(ref, consumer).register_forward_pre_hook(lambda mod, args: (args[0] * mask,))
    return ref


@pytest.mark.parametrize("kind", sorted(PARAMETRIZE))
def test_parametrized_weights_are_pruned_as_the_weight_they_compute(kind):
    torch.manual_seed(0)
    model = MLP().eval()
    PARAMETRIZE[kind](model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    user_class = type(model.l1), type(model.l2)
    x = torch.randn(3, 16)
    with pytest.warns(UserWarning, match=r"parametrized tensors .*l[12]\.weight"):
        pruned = graphprune.prune(model, 0.5, x, output="module")
    # the user's model: same values, still parametrized, its generated classes intact and working
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (type(model.l1), type(model.l2)) == user_class
    assert any(parametrize.is_parametrized(m) for m in model.modules()) and model(x).shape == (3, 4)
    # the pruned model holds plain weights: rows of what the user's model computes, never re-normalised
    with torch.no_grad():
        kept1 = _kept_rows(pruned.l1.weight, model.l1.weight)
        kept2 = _kept_rows(pruned.l2.weight, model.l2.weight[:, kept1])
        assert pruned.l1.weight.shape[0] < 32 or pruned.l2.weight.shape[0] < 32
        ref = _zeroed_at(_zeroed_at(model, "l2", kept1), "l3", kept2)
        for inputs in (x, torch.randn(5, 16)):
            want = ref(inputs)
            assert (pruned.eval()(inputs) - want).abs().max() <= 1e-5 * max(1.0, float(want.abs().max()))


def test_parametrized_plan_replays_on_a_fresh_instance():
    torch.manual_seed(0)
    model = MLP().eval()
    parametrizations.weight_norm(model.l1)
    x = torch.randn(2, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = graphprune.prune(model, 0.5, x, return_result=True, output="graph")
        again = graphprune.apply_plan(copy.deepcopy(model), result.plan, x)
    with torch.no_grad():
        assert torch.allclose(again(x), result.model(x), atol=1e-6)


@pytest.mark.parametrize("output", ["module", "graph"])
def test_parametrized_model_saves_and_rebuilds_safely(output, tmp_path):
    from graphprune.export import load_pruned, save_pruned

    torch.manual_seed(0)
    model = MLP().eval()
    parametrizations.weight_norm(model.l1)
    fresh, x = copy.deepcopy(model), torch.randn(2, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = graphprune.prune(model, 0.5, x, return_result=True, output=output)
        # before: weight_norm's load_state_dict hook (a local function) made the pruned model unpicklable, and
        # the rebuild looked for 'l1.weight' among the fresh model's parametrization keys
        save_pruned(result.model, tmp_path / "m.pt", result.plan)
        back = load_pruned(tmp_path / "m.pt", model=fresh, example_inputs=x)
    with torch.no_grad():
        assert torch.equal(back.eval()(x), result.model.eval()(x))
    assert any(parametrize.is_parametrized(m) for m in fresh.modules())


def _old_weight_norm():
    m = MLP().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated API: exactly what a user with an old checkpoint has
        nn.utils.weight_norm(m.l2)
    return m


def _old_spectral_norm():
    m = MLP().eval()
    nn.utils.spectral_norm(m.l1)
    return m


@pytest.mark.parametrize("make, where, api", [(_old_weight_norm, "'l2'", "weight_norm"),
                                               (_old_spectral_norm, "'l1'", "spectral_norm")])
def test_hook_based_norms_are_refused_by_module_with_the_way_out(make, where, api):
    # before: weight_norm crashed in deepcopy with torch's internal message; spectral_norm was pruned from
    # the stale ``weight`` attribute (the traced graph did not equal the model: 0.8 relative error)
    model = make()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for call in (lambda: graphprune.prune(model, 0.5, torch.randn(2, 16)),
                 lambda: graphprune.inspect(model, torch.randn(2, 16))):
        with pytest.raises(ValueError, match=rf"module {where} \(Linear\) uses torch\.nn\.utils\.{api}.*"
                                             rf"parametrizations\.{api}.*remove_{api}"):
            call()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_torch_prune_masks_are_refused_by_module_with_the_way_out():
    import torch.nn.utils.prune as torch_prune

    model = MLP().eval()
    torch_prune.l1_unstructured(model.l2, "weight", amount=0.3)  # before: torch's deepcopy error, no module named
    with pytest.raises(ValueError, match=r"module 'l2' \(Linear\) has a torch\.nn\.utils\.prune mask on 'weight'"
                                         r".*torch\.nn\.utils\.prune\.remove\(module, 'weight'\)"):
        graphprune.prune(model, 0.5, torch.randn(2, 16))
    torch_prune.remove(model.l2, "weight")  # the way out
    assert graphprune.prune(model, 0.5, torch.randn(2, 16))(torch.randn(2, 16)).shape == (2, 4)


def test_torchscript_models_are_refused_with_the_way_out():
    model, x = MLP().eval(), torch.randn(2, 16)
    for scripted in (torch.jit.script(model), torch.jit.trace(model, x)):
        with pytest.raises(TypeError, match=r"the model \(.*\) is a TorchScript module.*nn\.Module it was made"):
            graphprune.prune(scripted, 0.5, x)
    outer = nn.Sequential(nn.Linear(16, 16), torch.jit.script(MLP()))
    with pytest.raises(TypeError, match=r"module '1' \(.*\) is a TorchScript module"):
        graphprune.prune(outer, 0.5, x)


def test_uninitialised_lazy_modules_are_refused_by_name():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4)).eval()
    x = torch.randn(1, 3, 6, 6)
    with pytest.raises(ValueError, match=r"module '3' \(LazyLinear\) has uninitialised lazy tensors "
                                         r"\['weight', 'bias'\].*run the model once"):
        graphprune.prune(model, 0.5, x)
    model(x)  # the way out: one call sets the shapes
    assert graphprune.prune(model, 0.5, x)(x).shape == (1, 4)


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        y = self.b1(self.c1(x))
        y.relu_()
        z = self.b2(self.c2(y))
        z += y
        z = z.masked_fill_(z > 1.0, 0.0)  # a comparison makes the mask: element-wise, channels stay apart
        return self.fc(z.mean((2, 3)))


def test_comparisons_and_masked_fill_in_place_prune_exactly():
    model, x = randomize_(ConvNet()).eval(), torch.randn(2, 3, 8, 8)
    result = check_rewrite(model, x, seed=1)  # before: 'gt' had no channel rule, so nothing was prunable
    assert result.counted_macs < 0.9 * check_rewrite(model, x, keep=result.graph.full_keep()).counted_macs
    pruned = graphprune.prune(model, 0.5, x)
    assert pruned(x).shape == (2, 5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_have_a_masked_reference(dtype):
    # before: the masked reference's float32 masks promoted activations, and BatchNorm refused the mix
    model, x = randomize_(ConvNet()).eval().to(dtype), torch.randn(2, 3, 8, 8).to(dtype)
    result = check_rewrite(model, x, seed=2, rtol=1e-2)
    assert {p.dtype for p in result.pruned.parameters()} == {dtype}
    pruned = graphprune.prune(model, 0.5, x)
    assert {p.dtype for p in pruned.parameters()} == {dtype} and pruned(x).dtype == dtype
    assert np.isfinite(float(pruned(x).float().abs().sum()))


class Shifted(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1), nn.Linear(16, 4)
        self.register_buffer("shift", torch.randn(1, 16, 1, 1), persistent=False)

    def forward(self, x):
        y = F.relu(self.c1(x) + self.shift)
        return self.fc(F.relu(self.c2(y)).mean((2, 3)))


def test_layout_dtype_flags_and_non_persistent_buffers_are_carried():
    model = Shifted().double().to(memory_format=torch.channels_last).eval()
    model.c1.requires_grad_(False)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64).to(memory_format=torch.channels_last)
    pruned = graphprune.prune(model, 0.5, x)
    assert pruned.c1.weight.shape[0] < 16
    # before: index_select returned contiguous weights, undoing the user's channels_last
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in (pruned.c1, pruned.c2))
    assert {p.dtype for p in pruned.parameters()} == {torch.float64}
    assert [p.requires_grad for p in pruned.c1.parameters()] == [False, False] and pruned.c2.weight.requires_grad
    assert "shift" not in pruned.state_dict() and pruned.shift.shape == (1, pruned.c1.out_channels, 1, 1)
    assert model.c1.weight.is_contiguous(memory_format=torch.channels_last) and model.shift.shape[1] == 16

"""Weights computed from parameters in ``forward`` (weight standardisation): a refusal that says what to do, and the
way it names (a parametrization, baked on graphprune's copy) pruning mask-equivalently."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

import graphprune
from graphprune.budget import BudgetError
from graphprune.depgraph import build_dependency_graph
from graphprune.testing.oracle import check_rewrite
from graphprune.trace import trace


def _standardise(w: torch.Tensor) -> torch.Tensor:
    # NOTE: per output filter, over all its input channels and taps: slicing input channels changes the statistics
    flat = w.reshape(1, w.shape[0], -1)
    return F.batch_norm(flat, None, None, training=True, momentum=0.0, eps=1e-5).reshape_as(w)


class StdConvInForward(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(x, _standardise(self.weight), self.bias, self.stride, self.padding)


class Standardise(nn.Module):
    def forward(self, w):
        return _standardise(w)


def _net(conv: type) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(conv(3, 8, 3, padding=1), nn.ReLU(), conv(8, 16, 3, padding=1), nn.ReLU(),
                         conv(16, 16, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


def test_weight_standardised_in_forward_is_refused_with_what_to_do():
    # every conv standardised (as in BiT / NFNet): each channel is some standardised conv's input -> nothing to prune
    torch.manual_seed(0)
    model = nn.Sequential(StdConvInForward(3, 8, 3, padding=1), nn.ReLU(), StdConvInForward(8, 16, 3, padding=1),
                          nn.ReLU(), StdConvInForward(16, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(BudgetError) as err:
        graphprune.prune(model, 0.5, x)
    text = str(err.value)
    assert "nothing to prune" in text
    assert "computed from parameters alone" in text and "torch.nn.utils.parametrize" in text


def test_standardised_conv_output_channels_stay_prunable():
    # per-filter statistics: dropping whole filters (output channels) is exact; the consumer here is a plain Linear
    graph = build_dependency_graph(trace(_net(StdConvInForward), torch.randn(2, 3, 8, 8)))
    assert graph.groups
    assert any("parameters alone" in f.reason for f in graph.frozen)
    check_rewrite(_net(StdConvInForward).eval(), torch.randn(2, 3, 8, 8), graph=graph)


def test_standardisation_as_a_parametrization_prunes_mask_equivalently():
    model = _net(nn.Conv2d).eval()
    for m in model:
        if isinstance(m, nn.Conv2d):
            parametrize.register_parametrization(m, "weight", Standardise())
    x = torch.randn(2, 3, 8, 8)
    result = check_rewrite(model, x, p_keep=0.6)  # on graphprune's copy, which holds the baked weights
    assert result.max_diff <= 1e-5 * max(result.scale, 1.0) and not result.keep.all()
    with pytest.warns(UserWarning, match="weight"):  # prune says which tensors it baked
        pruned = graphprune.prune(model, 0.5, x)
    assert pruned(x).shape == (2, 4)
    assert parametrize.is_parametrized(model[0], "weight")  # the user's model keeps its parametrization


def test_ordinary_frozen_ops_get_no_computed_weight_hint():
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)

        def forward(self, x):
            return torch.fft.fft2(self.conv(x)).real  # no channel rule: frozen, input-dependent

    graph = build_dependency_graph(trace(Plain(), torch.randn(1, 3, 8, 8)))
    assert graph.frozen and not any("parameters alone" in f.reason for f in graph.frozen)

"""Structure of the dependency graph for each coupling rule: which channels are coupled, what is frozen."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import graphprune
from graphprune.depgraph import Dim
from graphprune.testing import check_rewrite, randomize_
from graphprune.testing import patterns as P


def _graph(model, x):
    return graphprune.inspect(model.eval(), x)


def _group_with(graph, param, axis=0):
    """The group in which ``param``'s axis (output features by default) is pruned."""
    hits = [g for g in graph.groups if Dim(f"@{param}", axis) in g.members]
    assert len(hits) == 1, f"{param}[{axis}] in {len(hits)} groups"
    return hits[0]


def test_residual_add_couples_producers():
    g = _graph(P.Residual(), torch.randn(1, 3, 8, 8))
    stem = _group_with(g, "stem.0.weight")
    assert _group_with(g, "b.0.weight") is stem  # residual add: b's output joins the stem's channels
    assert _group_with(g, "a.0.weight") is not stem
    assert _group_with(g, "down.0.weight") is _group_with(g, "c.1.weight")


def test_depthwise_couples_input_and_output_channels():
    g = _graph(P.InvertedResidual(), torch.randn(1, 3, 8, 8))
    grp = _group_with(g, "expand.0.weight")
    assert grp is _group_with(g, "dw.0.weight") is _group_with(g, "dw_mult.weight", 0)
    assert grp.n_units == 48  # one unit = one depthwise group (its 2 multiplier outputs included)


# grouped convs (whole groups, offsets in every group): tests/depgraph/test_conv_groups.py


def test_concat_maps_each_branch_to_its_slice():
    g = _graph(P.Inception(), torch.randn(1, 3, 8, 8))
    b1, b2 = _group_with(g, "b1.0.weight"), _group_with(g, "b2.1.0.weight")
    assert b1 is not b2
    assert b1.n_units == 8 and b2.n_units == 16
    # the consumer's input columns are split between the branch groups
    after_cols = [d for grp in (b1, b2) for d in grp.members if d.value == "@after.0.weight"]
    assert len(after_cols) == 2


def test_flatten_carries_channels_into_linear_features():
    model = P.FlattenLinear().eval()
    x = torch.randn(1, 3, 8, 8)
    g = _graph(model, x)
    grp = _group_with(g, "features.2.0.weight")
    keep = g.full_keep()
    keep[grp.first_unit + np.array([0, 5])] = False
    r = check_rewrite(model, x, keep=keep, graph=g)
    assert r.pruned.get_submodule("fc1").in_features == 22 * 9


def test_unknown_op_freezes_its_tensors_and_says_why():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 8, 3, padding=1)
            self.c = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = torch.logcumsumexp(self.a(x), dim=1)  # an op without a rule: must not be pruned
            return self.c(F.relu(self.b(y)))

    g = _graph(Custom(), torch.randn(1, 3, 8, 8))
    assert not any(d.value == "@a.weight" for grp in g.groups for d in grp.members)
    assert any("no channel rule" in f.reason and "logcumsumexp" in f.reason for f in g.frozen)
    assert _group_with(g, "b.weight").n_units == 8  # the rest still prunes


def test_model_output_and_input_are_frozen():
    g = _graph(P.Residual(), torch.randn(1, 3, 8, 8))
    assert not any(d.value == "@fc.weight" and d.axis == 0 for grp in g.groups for d in grp.members)
    assert any(f.reason == "model output" for f in g.frozen)


def test_multihead_attention_units_are_head_offsets():
    g = _graph(P.ViTBlock(), torch.randn(1, 3, 8, 8))
    stream = _group_with(g, "patch.weight")
    assert stream is _group_with(g, "attn.in_proj_weight", 1)
    assert stream.n_units == 8  # 32 channels = 4 heads x 8: one unit per within-head offset
    assert not stream.exact  # LayerNorm over the stream


def test_heads_reshape_splits_on_head_dim():
    model = P.HeadsAttention().eval()
    x = torch.randn(2, 6, 12)
    g = _graph(model, x)
    qkv = _group_with(g, "qkv.weight")
    assert qkv.n_units == 8  # head_dim offsets shared by q, k, v of every head
    keep = g.full_keep()
    keep[qkv.first_unit + np.array([1, 2, 3])] = False
    r = check_rewrite(model, x, keep=keep, graph=g)
    assert r.pruned.get_submodule("qkv").out_features == 3 * 4 * 5


def test_group_norm_prunes_whole_groups():
    model = P.Norms().eval()
    x = torch.randn(1, 3, 8, 8)
    g = _graph(model, x)
    grp = _group_with(g, "gn.weight")
    assert grp.n_units == 8  # 32 channels / 4 per group
    keep = g.full_keep()
    keep[grp.first_unit + np.array([0, 7])] = False
    r = check_rewrite(model, x, keep=keep, graph=g)
    gn = r.pruned.get_submodule("gn")
    assert (gn.num_groups, gn.num_channels) == (6, 24)


def test_tied_weights_stay_tied():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(8, 16)
            self.b = nn.Linear(16, 8)
            self.c = nn.Linear(8, 16)
            self.c.weight = self.a.weight  # shared parameter
            self.d = nn.Linear(16, 3)

        def forward(self, x):
            return self.d(F.relu(self.a(x)) + F.relu(self.c(F.relu(self.b(F.relu(self.a(x)))))))

    model = Tied().eval()
    x = torch.randn(4, 8)
    g = _graph(model, x)
    r = check_rewrite(model, x, graph=g, seed=3)
    assert r.pruned.get_submodule("a").weight is r.pruned.get_submodule("c").weight


def test_slice_of_channels_rewrites_bounds():
    class Slicer(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 16, 1)
            self.b = nn.Conv2d(6, 4, 1)

        def forward(self, x):
            y = self.a(x)
            return self.b(y[:, 2:8])

    model = Slicer().eval()
    x = torch.randn(1, 3, 4, 4)
    g = _graph(model, x)
    grp = _group_with(g, "a.weight")
    keep = g.full_keep()
    keep[grp.first_unit + np.array([0, 3, 12])] = False  # before, inside and after the slice
    r = check_rewrite(model, x, keep=keep, graph=g)
    assert r.pruned.get_submodule("b").in_channels == 5


def test_reshape_as_and_expand_as_couple_with_the_shape_donor():
    """LeViT-style ``bn(x.flatten(0, 1)).reshape_as(x)`` and a gate ``g.expand_as(x)``: the donor tensor's
    channels shrink with the output instead of being frozen."""

    class LinearNorm(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.linear, self.bn = nn.Linear(cin, cout), nn.BatchNorm1d(cout)

        def forward(self, x):
            x = self.linear(x)
            return self.bn(x.flatten(0, 1)).reshape_as(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = LinearNorm(8, 16), LinearNorm(16, 12), nn.Linear(12, 4)
            self.gate = nn.Linear(16, 1)

        def forward(self, x):
            h = F.relu(self.a(x))
            h = h * torch.sigmoid(self.gate(h)).expand_as(h)
            y = F.relu(self.b(h))
            return self.c(y.flatten(0, 1).view_as(y))

    model, x = randomize_(Net()).eval(), torch.randn(2, 5, 8)
    g = _graph(model, x)
    assert _group_with(g, "a.linear.weight").n_units == 16
    assert _group_with(g, "b.linear.weight").n_units == 12
    check_rewrite(model, x, graph=g)


def test_batch_statistics_freeze_the_axes_they_reduce():
    """Weight standardisation (timm's StdConv2d / ScaledStdConv2d, NF-nets, BiT): ``F.batch_norm`` with
    batch statistics over each filter's input-channel elements. Removing an input channel would change
    every filter's mean and variance, so those channels are frozen; output channels stay prunable."""

    class StdConv(nn.Conv2d):
        def forward(self, x):
            w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                             training=True, momentum=0.0, eps=1e-5)
            return F.conv2d(x, w.reshape_as(self.weight), self.bias, self.stride, self.padding)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 8, 3), StdConv(8, 8, 3), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.c(F.relu(self.b(F.relu(self.a(x)))))

    model, x = randomize_(Net()).eval(), torch.randn(1, 3, 12, 12)
    g = _graph(model, x)
    assert not [grp for grp in g.groups if Dim("@a.weight", 0) in grp.members]
    assert _group_with(g, "b.weight").n_units == 8
    check_rewrite(model, x, graph=g)


class _CumsumOverLength(nn.Module):
    """A conv whose channels go through a cumulative sum along the sequence axis, then a 1x1 conv."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(3, 16, 3, padding=1)
        self.b = nn.Conv1d(16, 4, 1)

    def forward(self, x):
        return self.b(torch.cumsum(torch.relu(self.a(x)), dim=2) / x.shape[2])


def test_cumsum_along_a_non_channel_axis_keeps_channels_prunable(tmp_path):
    model, x = randomize_(_CumsumOverLength().eval()), torch.randn(2, 3, 10)
    g = _graph(model, x)
    grp = _group_with(g, "a.weight")  # one rule row (``cumsum``) makes the channel axis prunable
    assert grp.n_units == 16
    keep = g.full_keep()
    keep[grp.first_unit + np.arange(0, 16, 3)] = False
    r = check_rewrite(model, x, keep=keep, graph=g, onnx_path=str(tmp_path / "cumsum.onnx"))
    assert r.pruned.get_submodule("a").out_channels == 10 and r.pruned.get_submodule("b").in_channels == 10


def test_cumsum_along_channels_freezes_them():
    class Over(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv1d(3, 8, 1), nn.Conv1d(8, 4, 1)

        def forward(self, x):
            return self.b(torch.cumsum(self.a(x), dim=1))

    g = _graph(Over(), torch.randn(1, 3, 5))
    assert not [grp for grp in g.groups if Dim("@a.weight", 0) in grp.members]

"""ATen rule rows (``depgraph/rules/aten.py``) on small graphs: size reads, slices, splits, addmm."""

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from graphprune.capture import capture_with_export
from graphprune.depgraph import Dim, build_dependency_graph
from graphprune.testing import check_rewrite, random_keep
from graphprune.trace import TracedModel, propagate_shapes

aten = torch.ops.aten


def _aten_graph(use_size_as_number: bool) -> tuple[fx.GraphModule, tuple]:
    """x -> fc1 (12 features) -> view to (6, n) with n = sym_size(fc1 out, 2) [or x * n] -> fc2."""
    root = nn.Module()
    root.fc1, root.fc2 = nn.Linear(8, 12), nn.Linear(12, 4)
    g = fx.Graph()
    x = g.placeholder("x")
    y = g.call_function(aten.linear.default, (x, g.get_attr("fc1.weight"), g.get_attr("fc1.bias")))
    n = g.call_function(aten.sym_size.int, (y, 2))
    if use_size_as_number:
        z = g.call_function(aten.view.default, (g.call_function(aten.mul.Scalar, (y, n)), [6, 12]))
    else:
        z = g.call_function(aten.view.default, (y, [6, n]))
    g.output(g.call_function(aten.linear.default, (z, g.get_attr("fc2.weight"), g.get_attr("fc2.bias"))))
    gm = fx.GraphModule(root, g)
    return gm, (torch.randn(2, 3, 8),)


def _build(gm, inputs):
    macs = []
    shapes = propagate_shapes(gm, inputs, macs)
    return build_dependency_graph(TracedModel(gm, inputs, False, shapes, macs[0]))


def test_size_read_used_as_a_view_size_follows_the_pruned_width():
    gm, inputs = _aten_graph(use_size_as_number=False)
    graph = _build(gm, inputs)
    group = graph.groups[0]
    assert len(graph.groups) == 1 and Dim("@fc2.weight", 1) in group.members and group.n_units == 12
    result = check_rewrite(gm, inputs, graph=graph)
    assert result.pruned.fc1.weight.shape[0] < 12  # the view's size now comes from the pruned tensor


def test_size_read_used_as_a_number_freezes_that_width_with_the_reason():
    gm, inputs = _aten_graph(use_size_as_number=True)
    graph = _build(gm, inputs)
    assert not graph.groups
    reasons = [f.reason for f in graph.frozen if Dim("@fc1.weight", 0) in f.dims]
    assert any("used as a number" in r and "mul" in r for r in reasons), reasons


class _ShapeOps(nn.Module):
    """chunk -> swapped cat -> slice -> select: index maps that the rewrite must recompute."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 16), nn.Linear(10, 5)

    def forward(self, x):
        lo, hi = self.a(x).chunk(2, dim=-1)
        y = torch.cat([hi, lo], dim=-1)[..., 3:13]
        return self.b(y)[:, 0]


def test_chunk_cat_slice_rewrite_matches_the_masked_model():
    model, x = _ShapeOps().eval(), torch.randn(2, 3, 6)
    graph = build_dependency_graph(capture_with_export(model, x))
    group = [g for g in graph.groups if Dim("@a.weight", 0) in g.members][0]
    assert group.n_units == 16  # channels outside the slice are prunable too (they feed nothing)
    for seed in range(3):
        result = check_rewrite(model, x, graph=graph, seed=seed)
        kept = graph.kept_indices(Dim("@a.weight", 0), result.keep)
        assert result.pruned.a.weight.shape[0] == len(kept)


class _Conv1D(nn.Module):
    """GPT-2's Conv1D: ``addmm(bias, x2d, weight)`` with the weight stored (in, out)."""

    def __init__(self):
        super().__init__()
        self.w1, self.b1 = nn.Parameter(torch.randn(6, 10)), nn.Parameter(torch.randn(10))
        self.w2, self.b2 = nn.Parameter(torch.randn(10, 3)), nn.Parameter(torch.randn(3))

    def forward(self, x):
        h = torch.addmm(self.b1, x.view(-1, 6), self.w1).relu()
        return torch.addmm(self.b2, h, self.w2).view(2, 4, 3)


def test_addmm_prunes_weight_columns():
    model, x = _Conv1D(), torch.randn(2, 4, 6)
    graph = build_dependency_graph(capture_with_export(model, x))
    assert [(g.name, g.n_units) for g in graph.groups] == [("w1:1", 10)]
    result = check_rewrite(model, x, graph=graph, keep=random_keep(graph, np.random.default_rng(0)))
    assert result.pruned.w2.shape[0] == result.pruned.w1.shape[1] < 10

"""The record front end: capture by running, with what could differ on another input frozen, never pruned blind."""
import warnings

import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune.capture import capture, capture_by_running
from graphprune.depgraph import build_dependency_graph
from graphprune.trace import TraceError

X = torch.randn(1, 3, 8, 8)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


class _Detectorish(nn.Module):
    """A backbone, a head, then data-dependent post-processing (a boolean mask, a count read into Python)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(_block(3, 16), _block(16, 16))
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        logits = self.head(self.body(x))
        scores = logits.sigmoid().flatten()
        kept = scores[scores > 0.5]  # boolean index: a data-dependent size
        n = int((scores > 0.5).sum())  # a value read into Python
        return logits, kept[: max(n, 1)] * 2


class _Branch(nn.Module):
    """Which layer runs depends on the data: ``b`` never runs on the example."""

    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b, self.c = _block(3, 8), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        h = self.stem(x)
        y = self.a(h) if x.mean() > -1e9 else self.b(h)
        return self.c(y)


class _Count(nn.Module):
    def forward(self, x):
        return 2 + 3 * int(x[0, 0, 0, 0] > x[0, 0, 0, -1])


class _SliceByData(nn.Module):
    """A submodule reads a count from the data; the caller slices channels with it (caught by the probe)."""

    def __init__(self):
        super().__init__()
        self.stem, self.count, self.out = _block(3, 8), _Count(), nn.Conv2d(8, 6, 1)

    def forward(self, x):
        return self.out(self.stem(x))[:, : self.count(x)]



def _prunable_names(graph) -> set[str]:
    return {g.name for g in graph.groups}


def test_records_what_fx_and_export_cannot_and_keeps_parameter_names():
    model = _Detectorish().eval()
    with pytest.raises(TraceError):
        capture(model, X, front_end="fx")
    traced = capture_by_running(model, X)
    assert traced.front_end == "record"
    attrs = {n.target for n in traced.gm.graph.nodes if n.op == "get_attr"}
    assert {"body.0.0.weight", "head.weight", "body.1.1.running_mean"} <= attrs
    assert any("data-dependent number of elements" in why for why in traced.frozen_nodes.values())
    assert any("read a tensor value into Python" in why for why in traced.frozen_nodes.values())
    graph = build_dependency_graph(traced)
    names = _prunable_names(graph)
    assert "body.0.0.weight:0" in names and "body.1.0.weight:0" in names  # the backbone before any read
    assert not any(n.startswith("head.") for n in names)  # the head's outputs feed the post-processing


def test_the_same_groups_as_fx_on_a_plain_model():
    model = nn.Sequential(_block(3, 8), _block(8, 16), nn.Conv2d(16, 4, 1)).eval()
    fx_graph = build_dependency_graph(capture(model, X, front_end="fx"))
    rec_graph = build_dependency_graph(capture(model, X, front_end="record"))
    assert [(g.name, g.n_units) for g in fx_graph.groups] == [(g.name, g.n_units) for g in rec_graph.groups]


def test_a_branch_on_data_freezes_what_follows_the_read():
    traced = capture_by_running(_Branch().eval(), X)
    graph = build_dependency_graph(traced)
    assert not _prunable_names(graph)  # stem feeds a (after the read): frozen; b never ran: never pruned
    assert "b.weight" not in {n.target for n in traced.gm.graph.nodes if n.op == "get_attr"}  # did not run
    assert traced.gm.get_parameter("b.weight") is not None  # but the pruned model keeps its name
    convs = [n for n in traced.gm.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert convs[0].name not in traced.frozen_nodes  # the stem ran before the read
    for conv in convs[1:]:  # a and c ran after it
        assert "read a tensor value into Python in module '<root>'" in traced.frozen_nodes[conv.name]


def test_a_size_read_from_data_elsewhere_is_frozen_by_the_probe():
    model = _SliceByData().eval()
    x = torch.randn(1, 3, 8, 8)
    x[..., 0], x[..., -1] = 1.0, -1.0  # the probe (flipped) takes the other count
    traced = capture_by_running(model, x)
    graph = build_dependency_graph(traced)
    assert "out.weight:0" not in _prunable_names(graph)
    assert any("differ on a probe input" in f.reason for f in graph.frozen)
    blind = build_dependency_graph(capture_by_running(model, x, probe=None))
    assert "out.weight:0" in _prunable_names(blind)  # what the probe prevents: channels past the count pruned


def test_auto_reaches_the_record_front_end_with_a_warning():
    with pytest.warns(UserWarning, match="with the record front end"):
        traced = capture(_Detectorish().eval(), X)
    assert traced.front_end == "record"


def test_a_failing_forward_names_the_module():
    class Broken(nn.Module):
        def forward(self, x):
            return x.view(7, -1)

    model = nn.Sequential(nn.Conv2d(3, 4, 1), Broken())
    with pytest.raises(TraceError, match=r"module '1' \(Broken\)"):
        capture_by_running(model, X)


def test_prune_with_the_record_front_end_is_mask_equivalent_on_the_head():
    model = _Detectorish().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = graphprune.prune(model, 0.6, X, front_end="record", round_to=1, return_result=True)
    assert result.report.front_end == "record"
    keep = result.plan.keep_mask(result.graph)
    reference = graphprune.masked_model(result.graph, keep)
    logits, _ = result.model(X)
    assert torch.allclose(logits, reference(X)[0], atol=1e-5)
    assert result.report.macs_ratio < 0.95


class _Baked(nn.Module):
    """The width 16 is written into the code: the user's class cannot run at a smaller width."""

    def __init__(self):
        super().__init__()
        self.a, self.b = _block(3, 16), nn.Conv2d(16, 4, 1)

    def forward(self, x):
        h = self.a(x)
        h = h.reshape(1, 16, -1).reshape(1, 16, 8, 8)
        logits = self.b(h)
        return logits, logits.flatten()[logits.flatten() > 0]


def test_record_returns_the_users_class_or_says_which_width_the_code_bakes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = graphprune.prune(_Detectorish().eval(), 0.6, X, front_end="record", round_to=1,
                                  return_result=True)
        assert isinstance(result.model, _Detectorish) and result.report.output_kind == "module"
        assert result.model.body[0][0].out_channels == result.model.body[0][0].weight.shape[0] < 16
        with pytest.raises(graphprune.InPlaceError, match=r"code does not run at the pruned widths.*\(_Baked\)"):
            graphprune.prune(_Baked().eval(), 0.6, X, front_end="record", round_to=1)


def test_record_refuses_a_graph_that_replays_the_examples_selections():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(graphprune.InPlaceError, match="data-dependent"):
            graphprune.prune(_Detectorish().eval(), 0.6, X, front_end="record", output="graph")
        plain = nn.Sequential(_block(3, 8), nn.Conv2d(8, 4, 1)).eval()
        graph = graphprune.prune(plain, 0.6, X, front_end="record", output="graph")
    assert isinstance(graph, torch.fx.GraphModule)

"""Grouped-conv units (``graphprune/depgraph/conv_groups.py``): whole groups vs one offset in every group.

Every rewrite is held to the oracle (``check_rewrite``: pruned == masked reference, MACs == FlopCounterMode, and
ONNX Runtime where a path is given).
"""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision

import graphprune
from graphprune.depgraph import Dim
from graphprune.depgraph.conv_groups import check_grouped, groups_kept, unit_channels
from graphprune.search.menus import coarse_menu, heuristic_menu
from graphprune.testing import check_rewrite, randomize_
from graphprune.testing import patterns as P


def _group_with(graph, param, axis=0):
    hits = [g for g in graph.groups if Dim(f"@{param}", axis) in g.members]
    assert len(hits) == 1, f"{param}[{axis}] in {len(hits)} groups"
    return hits[0]


def _pattern():
    return randomize_(P.GroupedConv().eval()), torch.randn(1, 3, 8, 8)


def test_whole_group_units_remove_groups_and_keep_the_group_width(tmp_path):
    model, x = _pattern()
    g = graphprune.inspect(model, x, grouped="groups")
    grp = _group_with(g, "grouped.0.weight")
    # reduce's outputs, grouped's inputs and outputs and grouped2's inputs and outputs: one unit per group
    assert grp is _group_with(g, "reduce.0.weight") is _group_with(g, "grouped2.weight")
    assert grp.n_units == 4
    assert Dim("@grouped.0.weight", 1) not in grp.members  # the per-group input width is never pruned
    keep = g.full_keep()
    keep[grp.first_unit + 1] = False
    r = check_rewrite(model, x, keep=keep, graph=g, onnx_path=str(tmp_path / "m.onnx"))
    conv, conv2 = r.pruned.get_submodule("grouped.0"), r.pruned.get_submodule("grouped2")
    assert (conv.groups, conv.in_channels, conv.out_channels, conv.weight.shape[1]) == (3, 24, 24, 8)
    assert (conv2.groups, conv2.in_channels, conv2.out_channels) == (3, 24, 12)
    assert r.pruned.get_submodule("reduce.0").out_channels == 24
    assert groups_kept(g, keep) == [(n, 3, 4, 8, 8) for n in ("grouped_0", "grouped2")]


def test_group_width_units_keep_the_group_count():
    model, x = _pattern()
    g = graphprune.inspect(model, x, grouped="group_width")
    grp = _group_with(g, "grouped.0.weight")
    assert grp.n_units == 8  # 32 channels in 4 groups: 8 offsets
    keep = g.full_keep()
    keep[grp.first_unit + np.arange(3)] = False
    r = check_rewrite(model, x, keep=keep, graph=g)
    conv = r.pruned.get_submodule("grouped.0")
    assert (conv.groups, conv.out_channels, conv.weight.shape[1]) == (4, 20, 8)
    assert g.grouped == "group_width" and unit_channels(g).max() == 1


@pytest.mark.parametrize("grouped", ["groups", "group_width"])
def test_random_plans_are_exact_either_way(grouped):
    model, x = _pattern()
    g = graphprune.inspect(model, x, grouped=grouped)
    for seed in range(3):
        check_rewrite(model, x, graph=g, seed=seed)


def test_auto_takes_whole_groups_from_four_groups_up_and_bad_values_are_named():
    model, x = _pattern()
    g = graphprune.inspect(model, x)
    assert g.grouped == "auto" and {c.units for c in g.grouped_convs.values()} == {"groups"}  # 4 groups each
    two = nn.Sequential(nn.Conv2d(3, 16, 1), nn.Conv2d(16, 16, 3, padding=1, groups=2), nn.Conv2d(16, 4, 1))
    g2 = graphprune.inspect(two.eval(), x)
    assert [c.units for c in g2.grouped_convs.values()] == ["group_width"]  # 2 groups: a group is half the layer
    assert _group_with(g2, "0.weight").n_units == 8
    with pytest.raises(ValueError, match="grouped must be one of"):
        check_grouped("group")
    with pytest.raises(ValueError, match="grouped must be one of"):
        graphprune.prune(model, 0.5, x, grouped="offsets")


def test_regnet_at_half_the_macs_keeps_its_group_width(tmp_path):
    torch.manual_seed(0)
    model = randomize_(torchvision.models.regnet_y_400mf(weights=None).eval())
    x = torch.randn(1, 3, 32, 32)
    res = graphprune.prune(model, 0.5, x, return_result=True, output="module")
    assert res.report.output_kind == "module"  # the user's class, groups set in place
    assert res.report.grouped.startswith("grouped conv units groups; groups kept: ")
    dense = dict(model.named_modules())
    fewer = 0
    for name, conv in res.model.named_modules():
        if isinstance(conv, nn.Conv2d) and dense[name].groups > 1:
            width = dense[name].in_channels // dense[name].groups
            assert width == 8 and conv.in_channels // conv.groups == width  # RegNetY-400MF: 8 channels per group
            assert conv.out_channels // conv.groups == dense[name].out_channels // dense[name].groups
            fewer += conv.groups < dense[name].groups
    assert fewer >= 10  # groups go (16 grouped convs)
    # the same plan under the oracle: pruned == masked reference, and ONNX Runtime agrees
    g = graphprune.inspect(model, x)
    r = check_rewrite(model, x, keep=res.plan.keep_mask(g), graph=g, onnx_path=str(tmp_path / "regnet.onnx"))
    with torch.no_grad():
        assert torch.allclose(res.model(x), r.pruned(x), atol=1e-5)  # the in-place copy is the graph


def test_plan_replays_with_its_units():
    model, x = _pattern()
    res = graphprune.prune(model, 0.6, x, return_result=True, round_to=1, grouped="group_width", output="module")
    assert res.plan.info["grouped"] == "group_width"
    assert res.model.get_submodule("grouped.0").groups == 4  # the in-place copy takes the rule's group count
    again = graphprune.apply_plan(P.GroupedConv().eval(), res.plan, x)
    assert again.get_submodule("grouped.0").weight.shape == res.model.get_submodule("grouped.0").weight.shape


def test_menus_count_channels_of_whole_group_units():
    assert coarse_menu(49, 16).tolist() == list(range(1, 50))  # 16-channel groups: any count
    assert coarse_menu(32, 4).tolist() == list(range(4, 33, 4))  # 4-channel groups: 4 at a time (16 channels)
    assert coarse_menu(20, 24).tolist() == list(range(2, 21, 2))  # 24-channel groups: 48 channels a step
    assert coarse_menu(40).tolist() == [16, 32, 40]  # one channel per unit, as before
    assert heuristic_menu(32, 4).tolist() == list(range(2, 33, 2))
    assert heuristic_menu(40).tolist() == list(range(8, 41, 8))


def test_latency_pieces_time_whole_group_convs_at_fewer_groups():
    from graphprune.latency.pieces import node_pieces

    model, x = _pattern()
    specs = {p.node: p.spec for p in node_pieces(graphprune.inspect(model, x, grouped="groups"))[0]}
    assert specs["grouped_0"].layer(8, 24) == (24, 24, 3)  # 3 of 4 groups of 8 -> 8
    assert specs["grouped2"].layer(8, 12) == (24, 12, 3)  # 3 of 4 groups of 8 -> 4
    assert specs["grouped_0"].prunable == ("out",)
    offsets = {p.node: p.spec for p in node_pieces(graphprune.inspect(model, x, grouped="group_width"))[0]}
    assert offsets["grouped_0"].layer(6, 24) == (24, 24, 4)  # 4 groups of 6 -> 6


@pytest.mark.parametrize("output", ["module", "graph"])
def test_saved_whole_group_models_load_back(tmp_path, output):
    from graphprune.export.saving import load_pruned, save_pruned

    model, x = _pattern()
    res = graphprune.prune(model, 0.6, x, return_result=True, output=output)
    assert res.model.get_submodule("grouped.0").groups < 4
    path = save_pruned(res.model, tmp_path / "m.pt", res.plan)
    fresh = randomize_(P.GroupedConv().eval(), seed=1)
    loaded = load_pruned(path, model=fresh, example_inputs=x if output == "graph" else None)
    assert loaded.get_submodule("grouped.0").groups == res.model.get_submodule("grouped.0").groups
    with torch.no_grad():
        assert torch.allclose(loaded(x), res.model(x), atol=1e-6)

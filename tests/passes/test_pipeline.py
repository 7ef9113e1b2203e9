"""The one rewrite pipeline: block removal, branch removal and constant folding are ordinary passes driven by
the Handover's fields, and a keep-only handover is the plain width rewrite."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune.depgraph import Dim
from graphprune.passes import REWRITE_PIPELINE, Handover, RewriteError, rewrite
from graphprune.passes.fold_constants import FOLD_REPORT_KEY, fold_constant_inputs
from graphprune.passes.remove_block import find_blocks, remove_blocks
from graphprune.passes.remove_branch import branch_keep, find_branches
from graphprune.testing import PATTERNS, randomize_


def _pattern(name):
    p = next(p for p in PATTERNS if p.name == name)
    x = p.make_input()
    return graphprune.inspect(randomize_(p.build().eval()), x), x


def test_the_pipeline_names_every_pass_in_order():
    assert [name for name, _ in REWRITE_PIPELINE] == [
        "fold_constants", "slice_parameters", "apply_rule_rewrites", "remove_branches", "remove_blocks",
        "verify_shapes", "carry_module_state"]


def test_blocks_handed_over_are_removed_by_the_pipeline_as_remove_blocks_does():
    graph, x = _pattern("residual")
    blocks = find_blocks(graph.traced.gm)
    assert blocks
    out = rewrite(graph, Handover(graph.full_keep(), blocks=blocks[:1]))
    want = remove_blocks(graph.traced.gm, blocks[:1])
    assert blocks[0].add not in {n.name for n in out.graph.nodes}
    with torch.no_grad():
        assert torch.allclose(out.eval()(x), want.eval()(x), atol=1e-6)
    with pytest.raises(RewriteError, match="pass 'remove_blocks' failed.*not residual blocks"):
        rewrite(graph, Handover(graph.full_keep(), blocks=[blocks[0].__class__("nope", 0, ())]))


def test_branches_need_their_units_dropped_from_keep():
    graph, x = _pattern("inception_concat")
    branch = find_branches(graph.traced.gm)[0]
    with pytest.raises(RewriteError, match="holds channels of branch"):
        rewrite(graph, Handover(graph.full_keep(), branches=[branch]))
    out = rewrite(graph, Handover(branch_keep(graph, [branch]), branches=[branch]))
    assert not {n.name for n in out.graph.nodes} & set(branch.private)


def _head_with_constant_channels():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 10)).eval()
    with torch.no_grad():
        net[1].weight[:3] = 0.0
        net[1].bias[:3] = 0.7
    return net


def test_fold_batches_fold_on_the_copy_and_a_second_rewrite_reuses_the_fold():
    net, x = _head_with_constant_channels(), torch.zeros(1, 1, 8, 8)
    graph = graphprune.inspect(net, x)
    c = graph.dim_class[Dim("@1.weight", 0)]
    keep = graph.full_keep()
    keep[graph.element_unit[graph.class_offset[c]:graph.class_offset[c] + 3]] = False
    probe = [torch.randn(8, 1, 8, 8) for _ in range(2)]
    traced_bias = graph.traced.gm.get_submodule("5").bias.detach().clone()
    handover = Handover(keep, fold_batches=probe)
    first = rewrite(graph, handover).eval()
    assert handover.folds is not None and handover.folds.columns == 3
    assert first.meta[FOLD_REPORT_KEY] is handover.folds
    assert torch.equal(graph.traced.gm.get_submodule("5").bias, traced_bias), "the traced model is untouched"
    y = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(first(y), net(y), atol=1e-5), "folded: the pruned net computes the original"
        assert not torch.allclose(rewrite(graph, keep).eval()(y), net(y), atol=1e-3), "unfolded it would not"
    # a second rewrite (a learner's revive) puts the same biases in, without measuring a changed network
    with torch.no_grad():
        graph.traced.gm.get_submodule("1").bias.add_(1.0)
    second = rewrite(graph, handover).eval()
    assert torch.equal(second.get_submodule("5").bias, first.get_submodule("5").bias)
    # the same numbers as the function the learners called before it was a pass
    graph2 = graphprune.inspect(_head_with_constant_channels(), x)
    report = fold_constant_inputs(graph2.traced.gm, graph2, keep, probe)
    assert report.folded == handover.folds.folded
    assert torch.allclose(graph2.traced.gm.get_submodule("5").bias, first.get_submodule("5").bias)

"""remove_branch: a concat operand is removed with its consumers' input columns; the result equals the
original with that operand zeroed (structure, numbers, ONNX validity); refusals carry reasons."""
import copy

import pytest
import torch
import torch.fx as fx

import graphprune
import models
from graphprune.passes import RewriteError, remove_branches
from graphprune.passes.remove_branch import branch_units, check_branch, find_branches
from graphprune.testing import PATTERNS, randomize_


def pattern(name):
    p = next(p for p in PATTERNS if p.name == name)
    x = p.make_input()
    return graphprune.inspect(randomize_(p.build().eval()), x), x


def zeroed(gm: fx.GraphModule, concat: str, index: int) -> fx.GraphModule:
    """Reference: ``gm`` with operand ``index`` of concat ``concat`` multiplied by 0."""
    gm = copy.deepcopy(gm)
    node = next(n for n in gm.graph.nodes if n.name == concat)
    items = list(node.args[0])
    with gm.graph.inserting_before(node):
        items[index] = gm.graph.call_function(torch.mul, (items[index], 0.0))
    node.args = (items,) + tuple(node.args[1:])
    gm.recompile()
    return gm


def check_removal(graph, branches, x, tol=1e-5):
    gm = graph.traced.gm
    out = remove_branches(graph, branches)
    out.graph.lint()
    names = {n.name for n in out.graph.nodes}
    for b in branches:
        assert not names & set(b.private), "the branch's nodes must be gone"
    ref = gm
    for b in branches:
        ref = zeroed(ref, b.concat, b.index)
    with torch.no_grad():
        got, want = out.eval()(x), ref.eval()(x)
    assert (got - want).abs().max() <= tol * max(1.0, float(want.abs().max()))
    return out


def test_inception_pattern_each_branch():
    graph, x = pattern("inception_concat")
    branches = find_branches(graph.traced.gm)
    assert [b.index for b in branches] == [0, 1, 2]
    for b in branches:
        assert check_branch(graph, b) == ""
        out = check_removal(graph, [b], x)
        removed = len(branch_units(graph, b))
        assert out.get_submodule("after.0").in_channels == graph.traced.gm.get_submodule("after.0").in_channels - removed


def test_two_branches_of_one_concat():
    graph, x = pattern("inception_concat")
    b0, _, b2 = find_branches(graph.traced.gm)
    check_removal(graph, [b0, b2], x)


def test_every_operand_is_refused():
    graph, _ = pattern("inception_concat")
    with pytest.raises(RewriteError, match="every operand"):
        remove_branches(graph, find_branches(graph.traced.gm))


def test_dense_concat_branch_reused_later_is_refused_with_reason():
    graph, x = pattern("dense_concat")
    reasons = {(b.concat, b.index): check_branch(graph, b) for b in find_branches(graph.traced.gm)}
    assert any("also used outside the branch" in r for r in reasons.values())
    ok = [b for b in find_branches(graph.traced.gm) if not check_branch(graph, b)]
    assert ok, "the last layer of the dense block is a removable branch"
    check_removal(graph, ok, x)


def test_coupled_branch_is_refused_with_reason():
    graph, _ = pattern("shuffle_split_concat")
    reasons = [check_branch(graph, b) for b in find_branches(graph.traced.gm)]
    assert reasons and all("coupled to" in r for r in reasons)
    with pytest.raises(RewriteError, match="coupled to"):
        remove_branches(graph, find_branches(graph.traced.gm)[:1])


def test_googlenet_branches():
    x = torch.randn(2, 1, 8, 8)
    graph = graphprune.inspect(randomize_(models.build("googlenet", num_classes=10, in_channels=1).eval()), x)
    branches = find_branches(graph.traced.gm)
    assert len(branches) == 36 and all(check_branch(graph, b) == "" for b in branches)
    out = check_removal(graph, [branches[1], branches[-1]], x)
    assert sum(p.numel() for p in out.parameters()) < sum(p.numel() for p in graph.traced.gm.parameters())


def test_removed_branch_exports_to_onnx(tmp_path):
    from graphprune.export import check_onnx, export_onnx

    graph, x = pattern("inception_concat")
    out = remove_branches(graph, find_branches(graph.traced.gm)[1:2]).eval()
    check = check_onnx(out, (x,), export_onnx(out, (x,), tmp_path / "m.onnx"))
    assert check.max_abs_diff <= 1e-4

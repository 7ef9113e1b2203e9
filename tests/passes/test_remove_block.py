"""remove_block: a residual block becomes its shortcut; the result equals the original with the block's
mapping output zeroed (structure, numbers, ONNX validity)."""
import copy

import pytest
import torch
import torch.fx as fx

import graphprune
import models
from graphprune.passes.remove_block import Block, find_blocks, private_parts, remove_blocks
from graphprune.testing import PATTERNS, randomize_

RESIDUAL = ["residual", "inverted_residual_depthwise", "heads_reshape_sdpa", "layer_scale_raw_params",
            "vit_multihead_attention"]


def zeroed(gm: fx.GraphModule, add: str, index: int) -> fx.GraphModule:
    """Reference: ``gm`` with argument ``index`` of node ``add`` multiplied by 0."""
    gm = copy.deepcopy(gm)
    node = next(n for n in gm.graph.nodes if n.name == add)
    with gm.graph.inserting_before(node):
        zero = gm.graph.call_function(torch.mul, (node.args[index], 0.0))
    args = list(node.args)
    args[index] = zero
    node.args = tuple(args)
    gm.recompile()
    return gm


def check_removal(gm: fx.GraphModule, block: Block, x: torch.Tensor) -> fx.GraphModule:
    """Structure (lint, mapping nodes and their modules gone), numbers (== zeroed mapping)."""
    out = remove_blocks(gm, [block])
    out.graph.lint()
    names = {n.name for n in out.graph.nodes}
    assert block.add not in names and not names & set(block.private)
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n_params(out) < n_params(gm)
    with torch.no_grad():
        got, want = out.eval()(x), zeroed(gm, block.add, block.mapping).eval()(x)
    assert torch.equal(got, want), f"max diff {(got - want).abs().max():.3e}"
    return out


@pytest.mark.parametrize("name", RESIDUAL)
def test_pattern_blocks_are_mask_equivalent(name):
    pattern = next(p for p in PATTERNS if p.name == name)
    x = pattern.make_input()
    gm = graphprune.inspect(randomize_(pattern.build().eval()), x).traced.gm
    blocks = find_blocks(gm)
    assert blocks, f"{name}: no residual block found"
    for block in blocks:
        check_removal(gm, block, x)


@pytest.mark.parametrize("name,count", [("resnet20", 9), ("mobilenetv2", 10)])
def test_real_network_blocks(name, count):
    x = torch.randn(2, 1, 8, 8)
    gm = graphprune.inspect(randomize_(models.build(name, num_classes=10, in_channels=1).eval()), x).traced.gm
    blocks = find_blocks(gm)
    assert len(blocks) == count
    for block in (blocks[0], blocks[-1]):
        check_removal(gm, block, x)


def test_identity_side_is_the_parameter_free_operand():
    """Option-A ResNet: add(bn2(...), shortcut(x)) -> mapping is argument 0, the identity argument 1."""
    x = torch.randn(1, 1, 8, 8)
    gm = graphprune.inspect(models.build("resnet20", num_classes=10, in_channels=1).eval(), x).traced.gm
    first = find_blocks(gm)[0]
    assert first.mapping == 0
    assert first.private == ("layer1_0_conv1", "layer1_0_bn1", "relu_1", "layer1_0_conv2", "layer1_0_bn2")


def test_several_blocks_at_once_and_by_name():
    x = torch.randn(2, 1, 8, 8)
    gm = graphprune.inspect(randomize_(models.build("resnet20", num_classes=10, in_channels=1).eval()), x).traced.gm
    adds = [b.add for b in find_blocks(gm)][:3]
    out = remove_blocks(gm, adds)
    ref = gm
    for b in find_blocks(gm)[:3]:
        ref = zeroed(ref, b.add, b.mapping)
    with torch.no_grad():
        assert torch.equal(out.eval()(x), ref.eval()(x))
    assert not any(name.startswith("layer1.") for name, _ in out.named_parameters())  # only shortcuts stay


class TwoHeavy(torch.nn.Module):
    """An add of two parameterised paths is not a residual block."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_add_of_two_parameterised_paths_is_not_a_block():
    gm = graphprune.inspect(TwoHeavy(), torch.randn(1, 3, 4, 4)).traced.gm
    assert find_blocks(gm) == []
    with pytest.raises(ValueError, match="not residual blocks"):
        remove_blocks(gm, ["add"])


def test_mapping_whose_nodes_feed_elsewhere_is_not_a_block():
    """Decoder: ``up(b) + a`` where ``b`` also feeds a lateral path: removing the add would not delete
    the mapping, so it is not offered as a block."""
    p = next(p for p in PATTERNS if p.name == "decoder_transpose_upsample_slice")
    gm = graphprune.inspect(p.build().eval(), p.make_input()).traced.gm
    assert find_blocks(gm) == []


def test_private_parts_exclude_shared_ancestors():
    gm = graphprune.inspect(TwoHeavy(), torch.randn(1, 3, 4, 4)).traced.gm
    add = next(n for n in gm.graph.nodes if n.name == "add")
    parts = private_parts(add.args)
    assert [sorted(n.name for n in p) for p in parts] == [["a"], ["b"]]


def test_removed_block_exports_to_onnx(tmp_path):
    from graphprune.export import check_onnx, export_onnx

    x = torch.randn(1, 1, 8, 8)
    gm = graphprune.inspect(randomize_(models.build("resnet20", num_classes=10, in_channels=1).eval()), x).traced.gm
    out = remove_blocks(gm, find_blocks(gm)[:2]).eval()
    check = check_onnx(out, (x,), export_onnx(out, (x,), tmp_path / "m.onnx"))
    assert check.max_abs_diff <= 1e-4

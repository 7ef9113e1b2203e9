"""passes/resize_modules.py: size attributes from tensor shapes agree with what the rule rewrites set."""
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune.passes.resize_modules import rebuild_like, resize_attributes
from graphprune.testing import PATTERNS, randomize_


def _size_attributes(module: nn.Module) -> dict:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in vars(module).items()
            if not k.startswith("_") and k != "training" and isinstance(v, (int, tuple, list))}


@pytest.mark.parametrize("pattern", PATTERNS, ids=[p.name for p in PATTERNS])
def test_rebuilt_attributes_equal_the_rule_rewrites(pattern):
    """The table, from shapes alone, gives every module the attributes the rule rewrites gave the pruned
    GraphModule's module of the same name (depthwise and grouped convs, norms, PReLU, attention, embeddings)."""
    torch.manual_seed(0)
    model, x = randomize_(pattern.build()).eval(), pattern.make_input()
    graph = graphprune.prune(model, 0.5, x, round_to=1, output="graph")
    rebuilt = rebuild_like(pattern.build().eval(), graph.state_dict())
    pruned_modules = dict(graph.named_modules())
    compared = 0
    for name, module in rebuilt.named_modules():
        twin = pruned_modules.get(name)
        if name and twin is not None and type(twin) is type(module):
            assert _size_attributes(module) == _size_attributes(twin), name
            compared += 1
    assert compared
    for name, t in rebuilt.state_dict().items():
        assert torch.equal(t, graph.state_dict()[name])


def test_depthwise_conv_loses_whole_groups():
    conv = nn.Conv2d(8, 16, 3, groups=8)  # channel multiplier 2
    conv.weight = nn.Parameter(conv.weight[:6].detach())  # three whole groups kept
    conv.bias = nn.Parameter(conv.bias[:6].detach())
    assert resize_attributes(conv)
    assert (conv.in_channels, conv.out_channels, conv.groups) == (3, 6, 3)
    assert conv(torch.randn(1, 3, 5, 5)).shape == (1, 6, 3, 3)


def test_grouped_conv_keeps_its_group_count():
    conv = nn.Conv2d(8, 8, 1, groups=2)  # 4 inputs per group; same offsets pruned in both groups
    conv.weight = nn.Parameter(conv.weight[[0, 1, 4, 5]][:, :3].detach())
    conv.bias = nn.Parameter(conv.bias[[0, 1, 4, 5]].detach())
    resize_attributes(conv)
    assert (conv.in_channels, conv.out_channels, conv.groups) == (6, 4, 2)
    assert conv(torch.randn(1, 6, 2, 2)).shape == (1, 4, 2, 2)


def test_unknown_module_type_is_left_alone():
    assert not resize_attributes(nn.ReLU())


def test_rebuild_like_refuses_a_state_dict_of_another_model():
    with pytest.raises(KeyError, match="fresh instance"):
        rebuild_like(nn.Linear(3, 4), {"other.weight": torch.zeros(2, 3)})


def test_rebuild_like_leaves_the_given_model_alone():
    model = nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    saved = {"0.weight": torch.randn(5, 3), "0.bias": torch.randn(5), "1.weight": torch.randn(5),
             "1.bias": torch.randn(5), "2.weight": torch.randn(2, 5), "2.bias": torch.randn(2)}
    rebuilt = rebuild_like(model, saved)
    assert rebuilt[1].normalized_shape == (5,) and rebuilt[2].in_features == 5 and rebuilt[0].out_features == 5
    assert model[1].normalized_shape == (8,) and model[0].weight.shape == (8, 3)
    assert torch.equal(rebuilt[2].weight, saved["2.weight"])

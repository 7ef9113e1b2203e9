"""passes/code_graph.py: the first place where the model's code departs from the pruned graph."""
import torch
import torch.fx as fx
import torch.nn as nn

from graphprune.passes.code_graph import first_difference


class _Net(nn.Module):
    def __init__(self, width: int = 16, stop=None, shape=(4, 4)):
        super().__init__()
        self.width, self.stop, self.shape = width, stop, shape

    def forward(self, x):
        y = x[:, 4:self.stop]
        return y.reshape(-1, self.width), x.reshape(self.shape[0], -1)


def _graph(**kw) -> fx.Graph:
    return fx.symbolic_trace(_Net(**kw)).graph


SHAPES = {"x": (2, 14)}


def test_same_code_is_the_same_program():
    assert first_difference(_graph(), _graph(), SHAPES) is None


def test_a_baked_size_is_an_integer_pair_at_its_node():
    diff = first_difference(_graph(width=16), _graph(width=8), SHAPES)
    assert diff.node.name == "reshape" and diff.sizes == [(16, 8)]
    assert "node 'reshape' (call_method reshape): the model's code passes argument 2: 16 -> 8" in diff.text
    assert "baked" in diff.text


def test_an_open_slice_equals_the_explicit_one_on_the_pruned_shape():
    assert first_difference(_graph(stop=None), _graph(stop=14), SHAPES) is None  # x[:, 4:] on 14 channels
    diff = first_difference(_graph(stop=None), _graph(stop=12), SHAPES)
    assert diff.node.name == "getitem" and diff.sizes == []  # None -> 12 is not an integer pair


def test_a_list_equals_the_tuple_of_the_same_sizes():
    assert first_difference(_graph(shape=(4, 4)), _graph(shape=[4, 4]), SHAPES) is None


def test_a_replaced_call_is_a_structural_difference():
    code, pruned = _graph(), _graph()
    node = next(n for n in pruned.nodes if n.name == "reshape")
    node.target = "view"
    diff = first_difference(code, pruned, SHAPES)
    assert diff.node.name == "reshape" and "changed the operation" in diff.text and not diff.sizes

"""Gates on units: all-ones gates equal the original exactly; 0/1 gates equal the masked reference;
one gate per unit (residual-coupled channels share it); materialize keeps the function."""
import numpy as np
import pytest
import torch

import graphprune
import models
from graphprune.learners.gates import Structure, attach_gates, find_sites, materialize
from graphprune.passes import masked_model
from graphprune.testing import PATTERNS, random_keep, randomize_

IDS = [p.name for p in PATTERNS]


def setup(pattern):
    model = randomize_(pattern.build().eval())
    x = pattern.make_input()
    return model, x, graphprune.inspect(model, x)


@pytest.mark.parametrize("pattern", PATTERNS, ids=IDS)
def test_all_ones_gates_equal_the_original_exactly(pattern):
    model, x, graph = setup(pattern)
    gated = attach_gates(graph)
    gated.gm.eval()
    assert gated.unit_gates.values.shape == (graph.n_units,)
    with torch.no_grad():
        assert torch.equal(gated(x), model(x))


# NOTE: a fused SDPA both reduces the head dim (q·k) and carries it (v), so a gate placed only where a
# unit is no longer carried cannot zero q and k; like LayerNorm, that case is documented as inexact.
EXACT = [p for p in PATTERNS if p.exact and p.name != "heads_reshape_sdpa"]


@pytest.mark.parametrize("pattern", EXACT, ids=[p.name for p in EXACT])
def test_keep_gates_equal_the_masked_reference(pattern):
    _, x, graph = setup(pattern)
    keep = random_keep(graph, np.random.default_rng(1))
    gated = attach_gates(graph)
    gated.gm.eval()
    with torch.no_grad():
        gated.unit_gates.values.copy_(torch.as_tensor(keep, dtype=torch.float32))
        got, want = gated(x), masked_model(graph, keep).eval()(x)
    assert (got - want).abs().max() <= 1e-5 * max(1.0, float(want.abs().max()))


def test_residual_coupled_channels_share_one_gate():
    """In the residual pattern every reader of the residual stream indexes the same units."""
    _, _, graph = setup(next(p for p in PATTERNS if p.name == "residual"))
    stream = next(g for g in graph.groups if any(d.value == "@b.0.weight" for d in g.members))
    units = set(range(stream.first_unit, stream.first_unit + stream.n_units))
    readers = [s for s in find_sites(graph) if units & set(s.index)]
    assert len(readers) >= 2, "the stream is read by the next block and by the downsample path"
    for s in readers:
        assert set(s.index) - {-1} == units


def test_one_gate_per_read_no_square_along_conv_bn_relu():
    """A soft gate g on a unit scales the reader's input once: output is linear in g for a linear head."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 2 * 2, 1, bias=False)).eval()
    x = torch.randn(2, 3, 2, 2)
    graph = graphprune.inspect(net, x)
    gated = attach_gates(graph).gm.eval()
    with torch.no_grad():
        base = gated(x)
        gated.get_submodule("gp_unit_gates").values.fill_(0.5)
        assert torch.allclose(gated(x), 0.5 * base, atol=1e-6)


@pytest.mark.parametrize("pattern", PATTERNS, ids=IDS)
def test_materialize_keeps_the_function(pattern):
    _, x, graph = setup(pattern)
    gated = attach_gates(graph)
    gated.gm.eval()
    with torch.no_grad():
        gated.unit_gates.values.uniform_(0.0, 2.0)
        want = gated(x)
        got = materialize(gated).eval()(x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


def test_materialize_of_ones_is_the_plain_graph():
    _, _, graph = setup(next(p for p in PATTERNS if p.name == "inception_concat"))
    gm = materialize(attach_gates(graph))
    assert [n.target for n in gm.graph.nodes] == [n.target for n in graph.traced.gm.graph.nodes]


def test_structure_gates_scale_whole_operands():
    x = torch.randn(2, 1, 8, 8)
    model = randomize_(models.build("resnet20", num_classes=10, in_channels=1).eval())
    graph = graphprune.inspect(model, x)
    gated = attach_gates(graph, structures=[Structure("block", "add", 0)])
    gated.gm.eval()
    with torch.no_grad():
        assert torch.equal(gated(x), model(x))
        gated.structure_gates.values.zero_()
        from graphprune.passes.remove_block import remove_blocks

        assert torch.allclose(gated(x), remove_blocks(graph.traced.gm, ["add"]).eval()(x), atol=1e-6)


@pytest.mark.parametrize("name", ["resnet56", "mobilenetv2", "googlenet"])
def test_real_networks_ones_exact(name):
    x = torch.randn(2, 1, 8, 8)
    model = randomize_(models.build(name, num_classes=10, in_channels=1).eval())
    gated = attach_gates(graphprune.inspect(model, x))
    with torch.no_grad():
        assert torch.equal(gated.gm.eval()(x), model(x))


def test_gated_copy_never_touches_the_user_model():
    model = randomize_(models.build("resnet20", num_classes=10, in_channels=1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gated = attach_gates(graphprune.inspect(model, torch.randn(1, 1, 8, 8)))
    with torch.no_grad():
        for p in gated.gm.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

"""fold_constants: channels a learner left constant are folded into Linear / unpadded-conv biases, so the
pruned network equals the learned one (not the one with those channels zeroed); padded convs are refused."""
import numpy as np
import torch
import torch.nn as nn

import graphprune
from graphprune.depgraph import Dim
from graphprune.passes import rewrite
from graphprune.passes.fold_constants import dropped_columns, fold_constant_inputs


def _drop_channels(graph, bn: str, channels) -> np.ndarray:
    """Keep mask dropping the units of ``channels`` of BatchNorm ``bn``."""
    c = graph.dim_class[Dim(graph.param_alias.get(f"@{bn}.weight", f"@{bn}.weight"), 0)]
    units = graph.element_unit[graph.class_offset[c]:graph.class_offset[c] + graph.class_size[c]]
    keep = graph.full_keep()
    keep[units[list(channels)]] = False
    return keep


def _constant_channels(net, bn_index, channels, beta=0.7):
    with torch.no_grad():
        net[bn_index].weight[channels] = 0.0
        net[bn_index].bias[channels] = beta
    return net


def _check(net, bn, channels, x, folds: bool):
    net = net.eval()
    graph = graphprune.inspect(net, x)
    keep = _drop_channels(graph, bn, channels)
    probe = [torch.randn_like(x.expand(8, *x.shape[1:])) for _ in range(2)]
    zeroed = rewrite(graph, keep).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = fold_constant_inputs(graph.traced.gm, graph, keep, probe)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items()), "the traced model is untouched"
    folded = rewrite(graph, keep).eval()
    y = torch.randn(4, *x.shape[1:])
    with torch.no_grad():
        ref, a, b = net(y), zeroed(y), folded(y)
    assert not torch.allclose(a, ref, atol=1e-3), "dropping the constants changes the output"
    if folds:
        assert torch.allclose(b, ref, atol=1e-5), f"folded differs by {(b - ref).abs().max():.2e}"
    return report


def test_linear_reader_after_pooling_folds_exactly():
    torch.manual_seed(0)
    net = _constant_channels(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)), 1, [1, 4, 6])
    report = _check(net, "1", [1, 4, 6], torch.randn(1, 3, 6, 6), folds=True)
    assert report.folded == {"5": 3} and not report.skipped


def test_flatten_linear_reader_folds_every_feature_of_a_channel():
    torch.manual_seed(0)
    net = _constant_channels(nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU6(),
                                           nn.Flatten(), nn.Linear(4 * 3 * 3, 5)), 1, [2])
    report = _check(net, "1", [2], torch.randn(1, 3, 6, 6), folds=True)
    assert report.folded == {"4": 9}, "one channel = 9 flattened features, all constant"


def test_unpadded_conv_reader_folds_exactly():
    torch.manual_seed(0)
    net = _constant_channels(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                           nn.Conv2d(8, 6, 3, padding=0), nn.Flatten(1), nn.Linear(6 * 4 * 4, 2)),
                             1, [0, 3])
    report = _check(net, "1", [0, 3], torch.randn(1, 3, 6, 6), folds=True)
    assert report.folded == {"3": 2}


def test_padded_conv_reader_is_refused_with_the_reason():
    torch.manual_seed(0)
    net = _constant_channels(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                           nn.Conv2d(8, 6, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                           nn.Linear(6, 2)), 1, [0, 3])
    report = _check(net, "1", [0, 3], torch.randn(1, 3, 6, 6), folds=False)
    assert report.columns == 0 and "padding" in report.skipped["3"]


def test_varying_columns_are_never_folded():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()
    x = torch.randn(1, 3, 6, 6)
    graph = graphprune.inspect(net, x)
    keep = _drop_channels(graph, "1", [1, 2])
    assert list(dropped_columns(graph, "5", keep)) == [1, 2]
    bias = net[5].bias.clone()
    report = fold_constant_inputs(graph.traced.gm, graph, keep, [torch.randn(8, 3, 6, 6)])
    assert report.columns == 0 and torch.equal(graph.traced.gm.get_submodule("5").bias, bias)
    assert torch.equal(net[5].bias, bias), "the user's model is not touched"

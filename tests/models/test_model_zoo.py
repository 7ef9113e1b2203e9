"""Every reference network builds, forwards, traces with torch.fx, and adapts to 1-channel 28×28 input."""
from __future__ import annotations

import pytest
import torch
import torch.fx

import models
from models.densenet import DenseNet
from models.resnet_cifar import PadShortcut


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_forward_and_fx_trace_agree(name):
    net = models.build(name).eval()
    x = torch.randn(2, *models.INPUT_SHAPES[name][1:])
    traced = torch.fx.symbolic_trace(net)
    traced.graph.lint()
    with torch.no_grad():
        eager, graph = net(x), traced(x)
    assert eager.shape == (2, 10)
    torch.testing.assert_close(graph, eager)


@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_one_channel_28px_and_custom_classes(name):
    net = models.build(name, num_classes=7, in_channels=1).eval()
    with torch.no_grad():
        out = net(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


def test_registry_shapes_and_errors():
    assert set(models.INPUT_SHAPES) == set(models.REGISTRY)
    assert models.INPUT_SHAPES["lenet5"] == (1, 1, 28, 28)
    assert models.INPUT_SHAPES["resnet56"] == (1, 3, 32, 32)
    assert set(models.PUBLISHED_COSTS) <= set(models.REGISTRY)
    with pytest.raises(KeyError, match="resnet56"):
        models.build("resnet57")


def test_resnet_depths_and_shortcut_options():
    blocks = lambda net: sum(1 for m in net.modules() if type(m).__name__ == "BasicBlock")  # noqa: E731
    assert [blocks(models.build(n)) for n in ("resnet20", "resnet56", "resnet110")] == [9, 27, 54]
    option_a = sum(p.numel() for p in models.build("resnet56", shortcut="A").parameters())
    option_b = sum(p.numel() for p in models.build("resnet56", shortcut="B").parameters())
    # Two projections, 16->32 and 32->64, each a 1×1 conv plus BN (weight, bias).
    assert option_b - option_a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    with pytest.raises(ValueError, match="shortcut"):
        models.build("resnet20", shortcut="C")
    with pytest.raises(ValueError, match="6n\\+2"):
        models.resnet_cifar.CifarResNet(21)


def test_option_a_shortcut_subsamples_and_pads_channels_symmetrically():
    x = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4, 4)
    y = PadShortcut(4, 8, stride=2)(x)
    assert y.shape == (2, 8, 2, 2)
    assert torch.equal(y[:, 2:6], x[:, :, ::2, ::2])
    assert not y[:, :2].any() and not y[:, 6:].any()


def test_densenet40_widths_grow_by_twelve_per_layer():
    net = models.build("densenet40")
    assert isinstance(net, DenseNet)
    assert [len(block) for block in (net.dense1, net.dense2, net.dense3)] == [12, 12, 12]
    assert net.dense1[0].conv.in_channels == 24
    assert net.trans1.conv.in_channels == net.trans1.conv.out_channels == 24 + 12 * 12
    assert net.fc.in_features == 456


def test_mobilenetv2_residuals_only_where_shapes_match():
    net = models.build("mobilenetv2")
    blocks = [m for m in net.modules() if type(m).__name__ == "InvertedResidual"]
    assert len(blocks) == 17
    assert sum(b.use_residual for b in blocks) == 10  # (2-1)+(3-1)+(4-1)+(3-1)+(3-1)
    depthwise = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert all(m.groups == m.in_channels == m.out_channels for m in depthwise)


def test_googlenet_inception_concatenates_four_branches():
    net = models.build("googlenet")
    assert net.a3.out_planes == 64 + 128 + 32 + 32
    assert net.linear.in_features == 1024
    out = net.a3(torch.randn(1, 192, 8, 8))
    assert out.shape == (1, 256, 8, 8)

"""The fake-quant simulation: 0-bit channels == pruned channels; the simulation quantises what it should."""
import numpy as np
import torch

import graphprune
from graphprune.passes import rewrite
from graphprune.quantize import fake_quant_model, zero_bit_model
from graphprune.quantize.scheme import WEIGHT_QMAX, activation_qparams, fake_quant_weight
from quant_nets import EXAMPLE


def _some_pruned(graph, seed: int = 0) -> np.ndarray:
    """A keep mask dropping about a third of every group's units (at least one kept)."""
    rng = np.random.default_rng(seed)
    keep = rng.random(graph.n_units) > 0.35
    for g in graph.groups:
        keep[g.units.start] = True
    assert not keep.all()
    return keep


def test_zero_bit_channels_compute_the_pruned_model(net, calib):
    graph = graphprune.inspect(net, EXAMPLE)
    keep = _some_pruned(graph)
    pruned = rewrite(graph, keep)
    zero_bit = zero_bit_model(graph, keep)
    x = calib[0]
    torch.testing.assert_close(zero_bit(x), pruned(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(zero_bit(x), graphprune.masked_model(graph, keep)(x), atol=1e-5, rtol=1e-5)


def test_zero_bit_and_pruned_channels_quantise_alike(net, calib):
    """Same per-channel weight scales and activation ranges, so the int8 simulations agree too."""
    graph = graphprune.inspect(net, EXAMPLE)
    keep = _some_pruned(graph, seed=3)
    bits = {"conv1": 32}
    fq_pruned = fake_quant_model(rewrite(graph, keep), calib, bits)
    fq_zero = fake_quant_model(zero_bit_model(graph, keep), calib, bits)
    scales = {n: m.qparams.scale for n, m in fq_pruned.named_modules() if n.startswith("_gp_act_")}
    zero_scales = {n: m.qparams.scale for n, m in fq_zero.named_modules() if n.startswith("_gp_act_")}
    assert scales.keys() == zero_scales.keys()  # NOTE: equal up to float summation order (zeros summed or not)
    assert all(abs(scales[n] / zero_scales[n] - 1) < 1e-6 for n in scales)
    x = torch.randn(8, 1, 12, 12)
    torch.testing.assert_close(fq_zero(x), fq_pruned(x), atol=1e-5, rtol=1e-5)


def test_int8_layers_are_quantised_and_fp32_layers_are_not(net, calib):
    gm = graphprune.inspect(net, EXAMPLE).traced.gm
    fq = fake_quant_model(gm, calib, {"fc": 32})
    for name in ("stem.0", "conv1", "down"):
        w = fq.get_submodule(name).weight
        torch.testing.assert_close(w, fake_quant_weight(w))  # already on the int8 grid
        scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / WEIGHT_QMAX  # 64 on x86 without VNNI
        assert torch.allclose(w / scale, torch.round(w / scale), atol=1e-3)
    torch.testing.assert_close(fq.fc.weight, net.fc.weight)
    fc = next(n for n in fq.graph.nodes if n.target == "fc")
    assert not str(fc.args[0].target).startswith("_gp_act_")  # an fp32 layer's input and output stay fp32
    assert not any(str(user.target).startswith("_gp_act_") for user in fc.users)
    down = next(n for n in fq.graph.nodes if n.target == "down")
    assert str(down.args[0].target).startswith("_gp_act_")
    assert all(str(user.target).startswith("_gp_act_") for user in down.users)


def test_activation_qparams_follow_onnx_runtime():
    qp = activation_qparams(-1.0, 3.0)
    assert abs(qp.scale - 4.0 / 255) < 1e-9 and qp.zero_point == 64
    assert activation_qparams(0.5, 2.0).zero_point == 0  # the range is widened to hold 0
    assert activation_qparams(0.0, 0.0).scale == 1.0


def test_int8_weight_range_follows_the_cpu(monkeypatch):
    """x86 without VNNI: 7-bit weights (ORT reduce_range), so u8 x s8 pairs cannot saturate int16; else full range."""
    from graphprune.quantize import scheme

    monkeypatch.setenv("GRAPHPRUNE_INT8_REDUCE_RANGE", "1")
    assert scheme._needs_reduce_range()
    monkeypatch.setenv("GRAPHPRUNE_INT8_REDUCE_RANGE", "0")
    assert not scheme._needs_reduce_range()
    monkeypatch.delenv("GRAPHPRUNE_INT8_REDUCE_RANGE")
    monkeypatch.setattr(scheme.platform, "machine", lambda: "aarch64")
    assert not scheme._needs_reduce_range()  # ARM's int8 dot products do not saturate
    assert scheme.WEIGHT_QMAX == (64 if scheme.REDUCE_RANGE else 127)
    w = torch.randn(4, 3, 3, 3)
    q = fake_quant_weight(w) / scheme.weight_scales(w).reshape(-1, 1, 1, 1)
    assert q.abs().max() <= scheme.WEIGHT_QMAX + 1e-4

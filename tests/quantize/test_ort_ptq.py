"""ONNX Runtime's int8 QDQ model == the fake-quant simulation, within quantisation tolerance.

Metric: max |ORT int8 - simulation| over the outputs <= 2 steps of the output's quantisation scale (a one-step
difference arises where an integer rounding tie falls differently between ORT's integer kernels and float
math; it can carry through one more layer), and argmax agreement >= 15/16 of the samples.
"""
import numpy as np
import onnx
import pytest
import torch

import graphprune
from graphprune.quantize import fake_quant_model, quantize_onnx
from graphprune.quantize.ort_ptq import QuantizeError, onnx_layer_nodes, ort_run

from quant_nets import EXAMPLE

STEPS = 2.0


def _output_scale(fq) -> float:
    last = [m for name, m in fq.named_modules() if name.startswith("_gp_act_")][-1]
    return last.qparams.scale


def _check_equal(model, calib, tmp_path, weight_bits=None, exporter="auto"):
    q = quantize_onnx(model, EXAMPLE, calib, tmp_path / "m.int8.onnx", weight_bits, exporter=exporter)
    fq = fake_quant_model(model, calib, weight_bits)
    x = torch.randn(16, 1, 12, 12, generator=torch.Generator().manual_seed(5))
    got, want = ort_run(q.int8_path, x), fq(x).detach().numpy()
    steps = np.abs(got - want).max() / _output_scale(fq)
    assert steps <= STEPS, f"ORT int8 differs from the simulation by {steps:.2f} output steps"
    assert (got.argmax(1) == want.argmax(1)).mean() >= 15 / 16
    fp32 = model(x).detach().numpy()
    assert np.abs(got - fp32).max() > 0, "the int8 model computes exactly fp32: was anything quantised?"
    return q


def test_int8_ort_equals_fake_quant(net, calib, tmp_path):
    gm = graphprune.inspect(net, EXAMPLE).traced.gm
    q = _check_equal(gm, calib, tmp_path)
    assert q.int8_bytes < q.fp32_bytes
    # the weights themselves: int8 is a quarter of fp32 plus per-channel scales and zero points (the file's
    # node and shape records are a fixed cost that dominates a model this small)
    weight_bytes = [sum(len(t.raw_data) for t in onnx.load(p).graph.initializer) for p in (q.fp32_path, q.int8_path)]
    assert weight_bytes[1] < 0.35 * weight_bytes[0], weight_bytes


def test_pruned_int8_ort_equals_fake_quant(net, calib, tmp_path):
    pruned = graphprune.prune(net, 0.5, EXAMPLE, round_to=1)
    _check_equal(pruned, calib, tmp_path)


def test_mixed_bits_exclude_the_fp32_layers(net, calib, tmp_path):
    import onnx

    gm = graphprune.inspect(net, EXAMPLE).traced.gm
    bits = {"conv1": 32, "fc": 32}
    q = _check_equal(gm, calib, tmp_path, bits)
    nodes = onnx_layer_nodes(q.fp32_path, gm)
    proto = onnx.load(str(q.int8_path))
    dequantized = {o for n in proto.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    by_name = {n.name: n for n in proto.graph.node}
    for layer, node in nodes.items():
        weight_is_int8 = by_name[node].input[1] in dequantized
        assert weight_is_int8 == (layer not in bits), layer


def test_the_torchscript_exporter_gives_the_same_int8_model(net, calib, tmp_path):
    # the bench's fast path (``exporter="torchscript"``): layers still line up, fp32 layers stay fp32
    gm = graphprune.inspect(net, EXAMPLE).traced.gm
    q = _check_equal(gm, calib, tmp_path, {"fc": 32}, exporter="torchscript")
    assert "fc" in onnx_layer_nodes(q.fp32_path, gm)


def test_misaligned_layers_are_refused(net, calib, tmp_path):
    gm = graphprune.inspect(net, EXAMPLE).traced.gm
    other = graphprune.inspect(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3)), EXAMPLE).traced.gm
    q = quantize_onnx(other, EXAMPLE, calib, tmp_path / "o.int8.onnx")
    with pytest.raises(QuantizeError, match="Conv/Linear calls"):
        onnx_layer_nodes(q.fp32_path, gm)


def test_calibration_reader_feeds_the_files_batch_and_cycles_the_first_samples():
    from graphprune.quantize.ort_ptq import CalibrationReader

    calib = [torch.arange(4.0).reshape(4, 1) + 10 * b for b in range(2)]  # 8 samples: 0-3, 10-13
    singles = [feed["x"].ravel().tolist() for feed in CalibrationReader(calib, ["x"])]
    assert singles == [[0.0], [1.0], [2.0], [3.0], [10.0], [11.0], [12.0], [13.0]]
    triples = [feed["x"].ravel().tolist() for feed in CalibrationReader(calib, ["x"], batch=3)]
    assert triples == [[0.0, 1.0, 2.0], [3.0, 10.0, 11.0], [12.0, 13.0, 0.0]]  # short last group: cycled
    reader = CalibrationReader(calib, ["x"], batch=8)
    assert reader.get_next()["x"].dtype == np.float32 and reader.get_next() is None

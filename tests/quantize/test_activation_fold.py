"""A Relu / ReLU6 right after an int8 layer is folded into the layer's output quantisation, in ORT and in the
simulation alike: no DequantizeLinear -> QuantizeLinear requantisation is left between layers."""
import collections

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

from graphprune.quantize import fake_quant_model, quantize_onnx
from graphprune.quantize.ort_ptq import ort_run

from quant_nets import EXAMPLE


class Relu6Net(nn.Module):
    """MobileNetV2's pattern: conv-BN-ReLU6, depthwise conv-BN-ReLU6, a linear projection, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(1, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16),
                                nn.ReLU6())
        self.project = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.project(self.dw(self.expand(x)))
        return self.fc(torch.relu(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)))


def _relu6_calls(gm) -> list:
    return [n for n in gm.graph.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target), nn.ReLU6)]


def _optimized_ops(path, tmp_path) -> tuple[collections.Counter, int]:
    """Op counts of ORT's optimised graph and the number of DequantizeLinear -> QuantizeLinear pairs in it."""
    opts = ort.SessionOptions()
    opts.optimized_model_filepath, opts.log_severity_level = str(tmp_path / "opt.onnx"), 3
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "opt.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    pairs = sum(n.op_type == "QuantizeLinear" and n.input[0] in producer
                and producer[n.input[0]].op_type == "DequantizeLinear" for n in graph.node)
    return collections.Counter(n.op_type for n in graph.node), pairs


def test_relu6_after_int8_layers_is_folded_in_ort_and_in_the_simulation(calib, tmp_path):
    torch.manual_seed(0)
    model = Relu6Net().eval()
    q = quantize_onnx(model, EXAMPLE, calib, tmp_path / "m.int8.onnx", exporter="torchscript")
    ops, pairs = _optimized_ops(q.int8_path, tmp_path)
    assert pairs == 0 and ops["Clip"] == 0 and ops["QLinearConv"] >= 2, ops  # expand and dw at least
    fq = fake_quant_model(model, calib)
    assert not _relu6_calls(fq)  # folded, as ORT folds them
    x = torch.randn(16, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    got, want = ort_run(q.int8_path, x), fq(x).detach().numpy()
    scale = [m for name, m in fq.named_modules() if name.startswith("_gp_act_")][-1].qparams.scale
    assert np.abs(got - want).max() / scale <= 2.0


def test_an_activation_after_an_fp32_layer_stays(calib, tmp_path):
    torch.manual_seed(0)
    model = Relu6Net().eval()
    fq = fake_quant_model(model, calib, {"expand.0": 32})
    kept = _relu6_calls(fq)
    assert len(kept) == 1 and kept[0].args[0].target == "expand.0"

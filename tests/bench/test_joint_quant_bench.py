"""bench/joint_quant.py smoke test: the harness's pieces on a tiny net (the full run is a benchmark)."""
import importlib.util
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn as nn

from graphprune.quantize import quantize_onnx
from graphprune.trace import trace

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_joint_quant", REPO / "bench" / "joint_quant.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NOTE: dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_latency_accuracy_and_report_on_a_tiny_net(tmp_path):
    bench = _bench()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 10)).eval()
    calib = [torch.randn(4, 1, 28, 28)]
    q = quantize_onnx(trace(net, bench.EXAMPLE).gm, bench.EXAMPLE, calib, tmp_path / "t.int8.onnx")
    ms = bench.interleaved_ms([q.fp32_path, q.int8_path], bench.EXAMPLE, rounds=2, runs=3)
    assert len(ms) == 2 and all(t > 0 for t in ms)
    test = torch.utils.data.TensorDataset(torch.randn(6, 1, 28, 28), torch.randint(0, 10, (6,)))
    acc = bench.ort_accuracy(q.int8_path, test)
    assert 0.0 <= acc <= 1.0
    row = bench.Row("tiny", 0.2, "joint", 0, 0.19, 0.05, q.int8_bytes, 1, 0.5, acc, 1.0,
                    latency_ratio=0.6, fp32_latency_ratio=0.9)
    report = {"model": "tiny", "note": "n", "command": "c", "dense_acc": 0.9, "dense_bytes": 1, "dense_ms": 1.0,
              "rows": [asdict(row)]}
    assert "| 0.2 | joint | 0 | 0.190 |" in bench.markdown(report)


def test_both_joint_searches_score_about_as_many_candidates():
    bench = _bench()
    args = SimpleNamespace(population=6, generations=2)
    evo = bench.search_options("joint", args, 0)
    rl = bench.search_options("rl", args, 0)
    assert evo["population"] + evo["generations"] * 3 == rl["episodes"] + 3

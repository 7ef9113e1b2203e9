"""bench/joint_quant_models.py smoke test: timing and the report on a tiny net (the study itself is a benchmark)."""
import importlib.util
import sys
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn

from graphprune.quantize import quantize_onnx
from graphprune.trace import trace

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NOTE: dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_rows_are_timed_and_summarised_over_seeds(tmp_path):
    bench, report_module = _load("joint_quant_models"), _load("joint_quant_report")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 10)).eval()
    q = quantize_onnx(trace(net, bench.EXAMPLE).gm, bench.EXAMPLE, [torch.randn(4, 1, 28, 28)],
                      tmp_path / "t.int8.onnx", exporter=bench.EXPORTER)
    rows = [bench.Row("tiny", 0.2, "joint", seed, 0.19, 0.05, q.int8_bytes, 0, acc, 1.0, 1.0, str(q.int8_path),
                      str(q.fp32_path), 1.0) for seed, acc in ((0, 0.5), (1, 0.7))]
    timing = bench.time_rows(rows, q.fp32_path, rounds=2)
    assert timing["dense_ms"] > 0 and all(r.latency_ratio > 0 and r.fp32_latency_ratio == 1.0 for r in rows)
    report = {"model": "tiny", "command": "c", "dense_acc": 0.9, "dense_bytes": 1,
              "args": {"ft_epochs": 1, "ft_subset": 8, "ft_batch": 4, "ft_lr": 0.1, "test_subset": 6,
                       "population": 2, "generations": 0, "held_out": 4, "calib_batches": 1},
              "rows": [asdict(r) for r in rows], **timing}
    (summary,) = report_module.summary(report)
    assert summary["seeds"] == 2 and abs(summary["acc_mean"] - 0.6) < 1e-9 and abs(summary["acc_std"] - 0.1) < 1e-9
    assert "| 0.20 | joint | 2 | 0.6000 ± 0.1000 |" in report_module.markdown(report)
    report_module.plot(report, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0

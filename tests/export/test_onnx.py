"""ONNX export of pruned models, ONNX Runtime agreement and latency measurement."""
import numpy as np
import pytest
import torch

import graphprune
from graphprune.export import ExportError, check_onnx, export_onnx, ort_latency
from graphprune.export.report import run_job
from graphprune.testing import PATTERNS, randomize_


def test_export_check_and_latency(tmp_path):
    p = PATTERNS[0]
    model, x = randomize_(p.build().eval()), p.make_input()
    pruned = graphprune.prune(model, 0.5, x)
    path = export_onnx(pruned, x, tmp_path / "m.onnx")
    check = check_onnx(pruned, x, path)
    assert check.max_abs_diff < 1e-4
    assert 0 < ort_latency(path, x, runs=3, warmup=1) < 5


def test_export_keeps_training_flag(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5)).train()
    export_onnx(model, torch.randn(2, 3), tmp_path / "d.onnx")
    assert model.training


def test_export_failure_is_reported(tmp_path):
    class NoOnnx(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x).real  # not exportable by either exporter

    with pytest.raises(ExportError, match="torchscript exporter"):
        export_onnx(NoOnnx(), torch.randn(3, 3), tmp_path / "x.onnx")


def test_run_job_report(tmp_path):
    p = PATTERNS[6]
    model, x = randomize_(p.build().eval()), p.make_input()
    pruned, report, plan = run_job("flatten_linear", model, x, 0.5, onnx_path=str(tmp_path / "j.onnx"),
                                   latency_runs=3)
    assert report.onnx_max_abs_diff < 1e-4
    assert report.dense_latency_ms > 0 and report.pruned_latency_ms > 0
    assert report.macs_ratio <= 0.5
    text = report.table()
    assert "ORT latency" in text and "ideal" in text
    assert '"macs_ratio"' in report.to_json()


def test_run_job_hints_at_round_to_for_odd_widths(tmp_path):
    import models

    model, x = models.build("resnet20", num_classes=10, in_channels=1).eval(), torch.zeros(1, 1, 28, 28)
    _, report, _ = run_job("r20", model, x, 0.7, onnx_path=str(tmp_path / "a.onnx"), latency_runs=2, round_to=1)
    assert any("not multiples of 8" in n and "round_to=8" in n for n in report.notes)
    pruned, report, _ = run_job("r20", model, x, 0.7, onnx_path=str(tmp_path / "b.onnx"), latency_runs=2,
                                round_to=8)
    assert not any("multiples of 8" in n for n in report.notes)
    assert all(m.out_channels % 8 == 0 for m in pruned.modules() if isinstance(m, torch.nn.Conv2d))

"""Smoke run of bench/latency_macs_target.py on a tiny CNN (the real bench times torchvision models)."""
import torch

from tests.bench.bench_modules import load_bench


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=4, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10))


def test_macs_target_bench_times_default_and_target_plans(monkeypatch, tmp_path):
    bench = load_bench("latency_macs_target")
    monkeypatch.setattr(bench, "build_model", lambda name: _tiny())
    row = bench.run("tiny", bench.parse_target("ort:1:1"), repeats=3, sessions=1, with_tp=False, measured=True)
    assert not row.errors, row.errors
    assert set(row.ms) == {"gp default", "gp target", "gp measured"} and row.dense_ms > 0
    for variant in row.ms:  # all meet the MACs budget; the target's plans came from a table built here
        assert 0.3 < row.macs[variant] <= 0.5 + 1e-6
        assert row.efficiency(variant) > 0
    assert row.table_s > 0 and row.prune_s > 0
    # the probe measured at least its starting plan whole, and every move it kept was measured faster
    assert row.search["measured"] >= 1 and row.search["end_ratio"] <= row.search["start_ratio"]
    text = bench.render([row], {"torch": "t", "onnxruntime": "o", "date": "d"})
    assert "gp target" in text and "| tiny |" in text and "plans measured" in text

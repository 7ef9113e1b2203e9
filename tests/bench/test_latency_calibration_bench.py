"""bench/latency_calibration.py: the calibration rules' algebra, and a smoke run on a tiny CNN."""
import json
import math

import pytest
import torch

from tests.bench.bench_modules import load_bench


def test_floor_power_goes_through_both_points_and_full():
    bench = load_bench("latency_calibration")
    f = bench.floor_power_through((0.5, 0.35), (0.8, 0.62))  # flatter at low x than x^gamma: a floor
    assert f(0.5) == pytest.approx(0.35, abs=1e-6) and f(0.8) == pytest.approx(0.62, abs=1e-6)
    assert f(1.0) == pytest.approx(1.0) and f(0.05) > 0.05
    g = bench.power_through([(0.5, 0.25)])
    assert g(0.5) == pytest.approx(0.25) and g(0.25) == pytest.approx(0.0625)
    # points a pure power law fits: the floor is 0 and the fit is that law
    h = bench.floor_power_through((0.5, 0.25), (0.8, 0.64))
    assert h(0.3) == pytest.approx(0.09, rel=1e-3)
    assert math.isfinite(bench.floor_power_through((0.5, 1.2), (0.8, 0.9))(0.4))  # no fit: falls back
    pw = bench.piecewise_through([(0.3, 0.2), (0.6, 0.5)])
    assert pw(0.3) == pytest.approx(0.2) and pw(0.6) == pytest.approx(0.5) and pw(1.0) == pytest.approx(1.0)
    assert pw(0.15) < 0.2 and pw(math.sqrt(0.18)) == pytest.approx(math.sqrt(0.1), rel=1e-9)


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, stride=4, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10))


def test_calibration_bench_measures_every_plan(monkeypatch, tmp_path):
    bench = load_bench("latency_calibration")
    monkeypatch.setattr(bench, "build_model", lambda name: _tiny())
    monkeypatch.setenv("GRAPHPRUNE_CACHE", str(tmp_path))
    out = tmp_path / "calibration.json"
    bench.main(["--models", "tiny", "--repeats", "3", "--sessions", "1", "--out", str(out)])
    saved = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in saved] == ["tiny"] and out.with_suffix(".md").exists()
    row = bench.Row(**saved[0])
    assert {"menu50", "menu80", "uniform60", "random0"} <= set(row.plans)
    for q in row.plans.values():
        assert 0 < q["x"] <= 1 + 1e-9 and 0 < q["macs"] <= 1 + 1e-9 and q["y"] > 0
    assert set(bench.scores(row)) == {"table", "power@half", "power-lsq", "floor+power", "piecewise", "macs"}
    assert "floor+power med / max" in bench.render([row], {"torch": "t", "onnxruntime": "o", "date": "d"})

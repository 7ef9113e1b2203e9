"""bench/search.py study mode: a tiny (model, seed) cell end to end on fake data, and the report's statistics.

The cell runs on a fake Fashion-MNIST layout (random images) with the bundled ResNet-20 checkpoint, so CI needs
neither the dataset nor torch-pruning (the ``tp-global-l2`` method is not run here).
"""
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench_modules import load_bench


_load = load_bench


def _fake_fashion_mnist(directory: Path, n_train: int = 200, n_test: int = 60) -> None:
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (directory / f"{prefix}-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", n, 28, 28)
                                                               + images.tobytes())
        (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", n)
                                                               + labels.tobytes())


def test_flattening_finds_the_step_of_a_step_curve():
    report = _load("search_study_report")
    rewards = [0.0] * 50 + [1.0] * 50
    f = report.flattening(rewards, window=20, fraction=0.95)
    # the trailing 20-episode mean first reaches 0.95 when 19 of its 20 episodes are past the step: episode 69
    assert f["flat_at"] == 69 and f["first_window"] == 0.0 and f["last_window"] == pytest.approx(1.0)
    assert report.flattening([1.0] * 10)["flat_at"] is None  # too short to say
    noise = np.random.default_rng(0).normal(0, 1, 200)
    assert report.flattening(noise)["rises"] is False and report.flattening(noise)["flat_at"] is None


def test_compare_reports_the_best_of_each_family_in_seed_std_units():
    report = _load("search_study_report")
    rows = []
    for seed, (u, g, rl) in enumerate([(0.60, 0.55, 0.64), (0.62, 0.57, 0.66), (0.64, 0.53, 0.68)]):
        for method, family, acc in (("uniform", "rule", u), ("global", "rule", g), ("rl-per-budget", "learned", rl)):
            rows.append({"model": "m", "seed": seed, "method": method, "family": family, "budget": 0.3,
                         "acc_after": acc, "acc_recal": acc - 0.1, "macs_ratio": 0.3, "params_ratio": 0.3,
                         "evaluations": 0, "search_seconds": 0.0})
    agg = report.aggregate(rows)
    (c,) = report.compare(agg, "rule", "learned")
    assert (c["a"], c["b"]) == ("uniform", "rl-per-budget")
    assert c["diff"] == pytest.approx(0.04) and c["pooled_std"] == pytest.approx(0.02)
    assert c["diff_in_std"] == pytest.approx(2.0) and c["paired_std"] == pytest.approx(0.0, abs=1e-12)


def test_study_cell_runs_every_cheap_method_and_meets_the_budget(tmp_path, monkeypatch):
    _fake_fashion_mnist(tmp_path / "fmnist")
    monkeypatch.setenv("GRAPHPRUNE_FASHION_MNIST", str(tmp_path / "fmnist"))
    torch.set_num_threads(1)
    search = _load("search")
    study = sys.modules["search_study"]
    args = search.parse_args(["--models", "resnet20", "--seeds", "0", "1", "--budgets", "0.3", "--episodes", "4",
                              "--population", "2", "--generations", "1", "--levels", "0.5", "--test", "40",
                              "--ft-subset", "40", "--calib", "16", "--eval", "16",
                              "--methods", "uniform", "rl-per-budget", "rl-conditional", "evolutionary", "rate-distortion",
                              "--part-dir", str(tmp_path / "parts"), "--out", str(tmp_path / "study")])
    result = search.study(args)
    rows = result["rows"]
    assert sorted({r["method"] for r in rows}) == ["evolutionary", "rate-distortion", "rl-conditional", "rl-per-budget",
                                                  "uniform"]
    assert {r["seed"] for r in rows} == {0, 1}
    for r in rows:
        assert r["macs_ratio"] <= 0.3 + 1e-6 and 0.0 <= r["acc_after"] <= 1.0
    per_budget = [r for r in rows if r["method"] == "rl-per-budget"]
    assert all(1 <= r["evaluations"] <= 4 for r in per_budget)  # one evaluation per episode (cache hits excluded)
    assert all(r["evaluations"] == 0 for r in rows if r["method"] == "uniform")
    assert len(result["rl_histories"]["resnet20/seed0"]["per-budget-0.3"]) == 4
    assert all(c["acc_after_std"] >= 0 for c in result["aggregate"])
    text = (tmp_path / "study.md").read_text()
    assert "rl-per-budget" in text and "Best rule vs best learned" in text
    assert (tmp_path / "study.png").exists()


def test_resume_skips_rows_already_in_the_parts(tmp_path, monkeypatch):
    _fake_fashion_mnist(tmp_path / "fmnist")
    monkeypatch.setenv("GRAPHPRUNE_FASHION_MNIST", str(tmp_path / "fmnist"))
    torch.set_num_threads(1)
    search = _load("search")
    common = ["--models", "resnet20", "--seeds", "0", "--budgets", "0.3", "--test", "20", "--ft-subset", "20",
              "--calib", "16", "--eval", "16", "--part-dir", str(tmp_path / "parts")]
    first = search.study(search.parse_args(common + ["--methods", "uniform", "--out", str(tmp_path / "s")]))
    results = {p: p.stat().st_mtime_ns for p in search.RESULTS.glob("search*")}
    again = search.study(search.parse_args(common + ["--methods", "uniform", "global", "--resume"]))
    # without --out the merged report stays beside the parts; the committed results are not touched
    assert (tmp_path / "parts" / "report" / "search_study.md").exists()
    assert {p: p.stat().st_mtime_ns for p in search.RESULTS.glob("search*")} == results
    assert [r["method"] for r in first["rows"]] == ["uniform"]
    assert sorted(r["method"] for r in again["rows"]) == ["global", "uniform"]  # uniform kept, not run again
    uniform = [r for r in again["rows"] if r["method"] == "uniform"]
    assert uniform == first["rows"]
    assert len(list((tmp_path / "parts").glob("*_seed0_*.json"))) == 2  # the resumed run never overwrites a part

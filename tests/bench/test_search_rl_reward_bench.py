"""bench/search_rl_reward.py: the ``rl-warm-ft`` study method in a tiny cell, and rows added to an earlier report."""
import importlib.util
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# NOTE: the fake dataset and module loader of the study's own bench test (one copy of them)
_study_test = _module(Path(__file__).with_name("test_search_study_bench.py"), "_search_study_bench_helpers")


def test_warm_ft_rows_merge_into_an_earlier_report(tmp_path, monkeypatch):
    _study_test._fake_fashion_mnist(tmp_path / "fmnist")
    monkeypatch.setenv("GRAPHPRUNE_FASHION_MNIST", str(tmp_path / "fmnist"))
    torch.set_num_threads(1)
    search = _study_test._load("search")
    import search_study_report as report_mod  # bench/ is on sys.path once search is loaded
    common = ["--models", "resnet20", "--seeds", "0", "--budgets", "0.3", "--episodes", "2", "--test", "20",
              "--ft-subset", "20", "--calib", "16", "--eval", "16", "--rl-reward-batch", "8"]
    base = search.study(search.parse_args(common + ["--methods", "uniform", "--part-dir", str(tmp_path / "a"),
                                                    "--out", str(tmp_path / "base")]))
    search.study(search.parse_args(common + ["--methods", "rl-warm-ft", "--part-dir", str(tmp_path / "b"),
                                             "--out", str(tmp_path / "new")]))
    import json

    part = json.loads(next((tmp_path / "b").glob("*.json")).read_text())
    (row,) = part["rows"]
    assert row["method"] == "rl-warm-ft" and row["family"] == "learned" and row["macs_ratio"] <= 0.3 + 1e-6
    assert row["init_rule"] in ("uniform", "global") and row["rl_options"]["reward_steps"] == 2
    assert row["evaluations"] >= 3  # two rule plans scored for the warm start, then the episodes (cache hits excluded)
    assert len(part["rl_histories"]["warm-ft-per-budget-0.3"]) == 2
    merged = report_mod.build([json.loads((tmp_path / "base.json").read_text()), part])
    assert sorted(r["method"] for r in merged["rows"]) == ["rl-warm-ft", "uniform"]
    assert [r for r in merged["rows"] if r["method"] == "uniform"] == base["rows"]  # the earlier row kept as it was
    rl_reward = _module(REPO / "bench" / "search_rl_reward.py", "search_rl_reward")
    rep = rl_reward.build([part], json.loads((tmp_path / "base.json").read_text()), None, ["a note"])
    text = rl_reward.markdown(rep)
    assert "rl-warm-ft" in text and "a note" in text
    assert {(v["method"], v["metric"]) for v in rep["versus"]} == {("rl-warm-ft", "acc_after"), ("rl-warm-ft", "acc_recal")}

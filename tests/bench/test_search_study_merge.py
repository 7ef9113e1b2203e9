"""search_study_report: a merged report splits back into parts (so new models add to it), and tp_global on a VGG.

Adding VGG-16 rows to a study whose ResNet-56 / MobileNetV2 parts are gone needs the old report itself as input;
these tests check that the round trip loses nothing and that new parts add rows without touching the old ones.
"""

import pytest
import torch

from bench_modules import load_bench


_load = load_bench


def _part(model: str, seed: int, accs: dict, episodes: int) -> dict:
    rows = [{"model": model, "seed": seed, "method": method, "family": family, "budget": 0.3, "acc_after": acc,
             "acc_recal": acc - 0.1, "macs_ratio": 0.3, "params_ratio": 0.3, "evaluations": 5, "search_seconds": 1.0}
            for (method, family), acc in accs.items()]
    return {"model": model, "seed": seed, "config": {"episodes": episodes, "budgets": [0.3], "test": 100},
            "dense_test_acc": 0.9, "rows": rows, "rl_histories": {"conditional": [0.1 * seed, 0.2]},
            "shared": {"sensitivity": {"evaluations": 3, "seconds": 2.0}}, "evaluator": {"calls": 9, "seconds": 1.0},
            "rl_uniform_scores": {}}


def test_a_merged_report_splits_back_into_its_parts_and_new_parts_add_to_it():
    report_module = _load("search_study_report")
    old = [_part("resnet56", s, {("uniform", "rule"): 0.6 + s / 100, ("rl-per-budget", "learned"): 0.5}, 60)
           for s in range(3)]
    merged = report_module.build(old, ["old note"])
    again = report_module.build(report_module.parts_from_report(merged), merged["notes"])
    for key in ("rows", "aggregate", "rule_vs_learned", "dense", "shared", "evaluator", "rl_histories"):
        assert again[key] == merged[key], key
    assert report_module.markdown(again) == report_module.markdown(merged)

    new = [_part("vgg16", s, {("uniform", "rule"): 0.7, ("evolutionary", "search"): 0.72 + s / 100}, 30)
           for s in range(3)]
    both = report_module.build(report_module.parts_from_report(merged) + new)
    assert {r["model"] for r in both["rows"]} == {"resnet56", "vgg16"}
    assert [r for r in both["rows"] if r["model"] == "resnet56"] == merged["rows"]  # old rows untouched
    assert both["model_config"]["vgg16"]["episodes"] == 30 and both["model_config"]["resnet56"]["episodes"] == 60
    text = report_module.markdown(both)
    assert "## vgg16" in text and '"episodes": 30' in text  # the model whose settings differ says so


def test_tp_global_on_a_vgg_prunes_the_hidden_linear_but_not_the_output():
    pytest.importorskip("torch_pruning")
    from models.vgg import VGG

    search = _load("search")
    torch.manual_seed(0)
    net = VGG(config=(8, "M", 16, 16), num_classes=10, in_channels=1).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    example = torch.randn(2, 1, 28, 28)
    pruned = search.tp_global(net, 0.4)
    linears = [m for m in pruned.classifier.modules() if isinstance(m, torch.nn.Linear)]
    assert linears[-1].out_features == 10 and linears[0].out_features < 512  # hidden Linear pruned too
    assert pruned(example).shape == (2, 10)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the user's model is untouched


def test_widths_table_pools_layers_into_vgg_stages_and_averages_seeds():
    widths_module = _load("search_study_widths")
    dense = widths_module.dense_widths("vgg16")
    assert dense == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 10]
    half_late = [w // 2 if i in (10, 11, 12) else w for i, w in enumerate(dense)]
    rows = [{"model": "vgg16", "seed": s, "method": "global", "budget": 0.5, "acc_after": 0.8, "widths": w}
            for s, w in enumerate([dense, half_late])]
    (kept,) = widths_module.kept_fractions(rows, "vgg16").values()
    assert kept["conv11-13 (1²)"] == pytest.approx(0.75) and kept["conv1-2 (28²)"] == 1.0 and kept["fc1"] == 1.0
    assert "| 0.50 | global | 1.00 |" in widths_module.markdown({("global", 0.5): kept}, rows, "vgg16")

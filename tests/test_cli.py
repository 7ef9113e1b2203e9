"""The command line: prune and inspect on bundled, torchvision and file models (bad input: tests/cli/)."""
import gzip
import json
import struct
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from graphprune.cli import main

NET = ("import torch.nn as nn\n"
       "def build():\n"
       "    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),\n"
       "                         nn.Conv2d(16, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 4))\n")


@pytest.fixture
def net(tmp_path) -> str:
    (tmp_path / "net.py").write_text(NET)
    return f"{tmp_path / 'net.py'}:build"


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    """A 60-image Fashion-MNIST-layout train and test split (random pixels, labels i % 10)."""
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (60, 28, 28), dtype=np.uint8)
        labels = (np.arange(60) % 10).astype(np.uint8)
        with gzip.open(tmp_path / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 60, 28, 28) + images.tobytes())
        with gzip.open(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 60) + labels.tobytes())
    monkeypatch.setenv("GRAPHPRUNE_FASHION_MNIST", str(tmp_path))
    return tmp_path


def test_prune_torchvision_with_onnx_and_report(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    rc = main(["prune", "torchvision:squeezenet1_1", "--budget", "0.5", "--input-shape", "1,3,64,64",
               "--onnx", str(out), "--report", str(tmp_path / "r.json"), "--save", str(tmp_path / "m.pt")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "MACs" in text and "ORT latency" in text
    assert out.exists() and (tmp_path / "m.pt").exists() and (tmp_path / "m.pt.plan.json").exists()
    assert json.loads((tmp_path / "r.json").read_text())["macs_ratio"] <= 0.5


def test_prune_model_from_file(net, capsys):
    rc = main(["prune", net, "--budget", "0.6", "--input-shape", "1,3,8,8"])
    assert rc == 0
    assert "0.6" in capsys.readouterr().out


def test_report_into_a_missing_folder_is_created_and_replacing_is_noted(net, tmp_path, capsys):
    report = tmp_path / "new" / "deeper" / "r.json"
    assert main(["prune", net, "--input-shape", "1,3,8,8", "--report", str(report)]) == 0
    assert json.loads(report.read_text())["budget"] == 0.5
    assert "replacing" not in capsys.readouterr().err
    assert main(["prune", net, "--input-shape", "1,3,8,8", "--report", str(report)]) == 0
    assert f"graphprune: replacing existing {report}" in capsys.readouterr().err


def _plan(tmp_path, name, *extra):
    path = tmp_path / f"{name}.pt"
    assert main(["prune", "models:lenet5", "--budget", "0.5", "--save", str(path), *extra]) == 0
    return json.loads(path.with_suffix(".pt.plan.json").read_text())["kept"]


def test_seed_makes_runs_repeat(tmp_path):
    torch.manual_seed(123)  # NOTE: whatever the global RNG holds, --seed decides the model's initialisation
    first = _plan(tmp_path, "a")
    torch.manual_seed(456)
    assert _plan(tmp_path, "b") == first
    assert _plan(tmp_path, "c", "--seed", "1") != first


def test_weights_are_loaded_safely(tmp_path):
    import models

    torch.manual_seed(7)  # the same initialisation as --seed 7: the plan must match that run's
    torch.save(models.build("lenet5").state_dict(), tmp_path / "w.pt")
    assert _plan(tmp_path, "w", "--weights", str(tmp_path / "w.pt")) == _plan(tmp_path, "s7", "--seed", "7")


def test_trust_file_allows_a_pickled_module(tmp_path):
    import models

    torch.manual_seed(7)
    torch.save(models.build("lenet5"), tmp_path / "m.pt")
    assert _plan(tmp_path, "m", "--weights", str(tmp_path / "m.pt"), "--trust-file") == \
        _plan(tmp_path, "s7", "--seed", "7")


def test_help_explains_models_and_defaults_and_version(capsys):
    assert main(["prune", "--help"]) == 0
    text = capsys.readouterr().out
    for form in ("torchvision:NAME", "timm:NAME", "models:NAME", "checkpoint:FILE", "path/file.py:FACTORY"):
        assert form in text
    assert "EXECUTES" in text and "0.5 when neither" in " ".join(text.split()) and "--trust-file" in text and "RISK" in text
    assert main(["--version"]) == 0
    assert f"torch {torch.__version__}" in capsys.readouterr().out


def test_strategy_and_importance_choices_come_from_the_registries(monkeypatch):
    from graphprune.cli.parser import build_parser
    from graphprune.importance import CRITERIA
    from graphprune.strategies import REGISTRY

    def choices(dest):
        sub = build_parser()._subparsers._group_actions[0].choices["prune"]
        return set(next(a for a in sub._actions if a.dest == dest).choices)

    assert choices("strategy") == set(REGISTRY)
    assert {"uniform", "global", "sensitivity", "evolutionary", "rl", "bn-ista", "slimming", "gal", "hsn"} <= \
        choices("strategy")
    assert choices("importance") == set(CRITERIA)
    monkeypatch.setitem(REGISTRY, "my_search", REGISTRY["sensitivity"])
    assert "my_search" in choices("strategy")


def test_search_strategy_with_data(fake_fashion, tmp_path, capsys):
    rc = main(["prune", "models:lenet5", "--budget", "0.6", "--strategy", "sensitivity", "--data",
               "fashion_mnist", "--data-samples", "40", "--save", str(tmp_path / "s.pt")])
    assert rc == 0
    plan = json.loads((tmp_path / "s.pt.plan.json").read_text())
    assert plan["info"]["strategy"] == "sensitivity" and plan["info"]["achieved"] <= 0.6


def test_learner_strategy_with_data_and_options(fake_fashion, capsys):
    rc = main(["prune", "models:lenet5", "--budget", "0.6", "--strategy", "slimming", "--data", "fashion_mnist",
               "--data-samples", "40", "--strategy-option", "steps_per_epoch=1", "--strategy-option",
               "progress=False"])
    assert rc == 0
    assert "learn" in capsys.readouterr().out


def test_inspect_prints_groups_and_writes_dot(tmp_path, capsys):
    rc = main(["inspect", "torchvision:resnet18", "--input-shape", "1,3,32,32", "--dot", str(tmp_path / "g.dot")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "prunable groups" in text and "layer1.0.conv1.weight:0" in text
    assert "conv1(out) bn1 layer1.0.conv1(in)" in text and "running_mean" not in text
    assert (tmp_path / "g.dot").read_text().startswith("graph dependency")


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text = []

    def handle_data(self, data):
        self.text.append(data)


def test_inspect_writes_a_self_contained_html_page_with_a_plan(tmp_path, capsys):
    page = tmp_path / "views" / "g.html"
    rc = main(["inspect", "models:resnet20", "--html", str(page), "--budget", "0.5", "--strategy", "uniform"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "kept" in out and f"wrote {page}" in out
    html = page.read_text()
    assert "http" not in html and "<svg" in html and "<script" not in html
    parser = _Text()
    parser.feed(html)
    text = " ".join(parser.text)
    assert "strategy uniform" in text and "conv1.weight:0" in text
    assert "model output" in text  # the frozen reason


def test_inspect_renders_svg(tmp_path, capsys):
    import shutil

    if shutil.which("dot") is None:
        pytest.skip("Graphviz 'dot' is not installed (the --svg error case is in tests/cli)")
    rc = main(["inspect", "models:lenet5", "--svg", str(tmp_path / "g.svg")])
    assert rc == 0
    assert "<svg" in (tmp_path / "g.svg").read_text()


def test_bad_budget_is_a_clean_error(capsys):
    rc = main(["prune", "torchvision:resnet18", "--budget", "1.5", "--input-shape", "1,3,32,32"])
    assert rc == 2
    assert "budget must be" in capsys.readouterr().err


def test_timm_model_that_fx_cannot_trace_needs_auto_leaf_or_export(capsys):
    pytest.importorskip("timm")
    args = ["prune", "timm:mobilevitv2_050", "--budget", "0.6", "--input-shape", "1,3,64,64"]
    assert main(args + ["--front-end", "fx"]) == 2
    assert "--auto-leaf" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="kept opaque"):
        assert main(args + ["--front-end", "fx", "--auto-leaf"]) == 0
    assert "MACs" in capsys.readouterr().out
    with pytest.warns(UserWarning, match="captured with torch.export"):
        assert main(args) == 0  # the default front end falls back to torch.export
    assert "torch.export" in capsys.readouterr().out


def test_budget_options_combine_into_one_budget():
    from graphprune.budget import Budget
    from graphprune.cli.commands import budget_of
    from graphprune.cli.parser import build_parser

    def parsed(*extra):
        return budget_of(build_parser().parse_args(["prune", "models:lenet5", *extra]))

    assert parsed() == Budget.macs(0.5)  # the default when no budget is given
    assert parsed("--latency", "0.6") == Budget.latency(0.6)  # a latency budget alone bounds only time
    assert parsed("--budget", "0.4", "--latency", "0.7") == Budget.macs(0.4) & Budget.latency(0.7)
    assert parsed("--ms", "2.5").time_ms == 2.5
    assert parsed("--budget", "0.3", "--metric", "params") == Budget.params(0.3)


def test_output_flag_chooses_what_prune_returns(net, capsys):
    assert main(["prune", net, "--budget", "0.6", "--input-shape", "1,3,8,8"]) == 0
    assert "output         the model's own class" in capsys.readouterr().out
    assert main(["prune", net, "--budget", "0.6", "--input-shape", "1,3,8,8", "--output", "graph"]) == 0
    assert "output         torch.fx GraphModule (output='graph' was asked for)" in capsys.readouterr().out

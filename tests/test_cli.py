"""The command line: prune and inspect on bundled, torchvision and file models."""
import json

import pytest

from graphprune.cli import main


def test_prune_torchvision_with_onnx_and_report(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    rc = main(["prune", "torchvision:squeezenet1_1", "--budget", "0.5", "--input-shape", "1,3,64,64",
               "--onnx", str(out), "--report", str(tmp_path / "r.json"), "--save", str(tmp_path / "m.pt")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "MACs" in text and "ORT latency" in text
    assert out.exists() and (tmp_path / "m.pt").exists() and (tmp_path / "m.pt.plan.json").exists()
    assert json.loads((tmp_path / "r.json").read_text())["macs_ratio"] <= 0.5


def test_prune_model_from_file(tmp_path, capsys):
    src = tmp_path / "net.py"
    src.write_text("import torch.nn as nn\n"
                   "def build():\n"
                   "    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),\n"
                   "                         nn.Conv2d(16, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 4))\n")
    rc = main(["prune", f"{src}:build", "--budget", "0.6", "--input-shape", "1,3,8,8"])
    assert rc == 0
    assert "0.6" in capsys.readouterr().out


def test_inspect_prints_groups_and_writes_dot(tmp_path, capsys):
    rc = main(["inspect", "torchvision:resnet18", "--input-shape", "1,3,32,32", "--dot", str(tmp_path / "g.dot")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "prunable groups" in text and "layer1.0.conv1.weight:0" in text
    assert (tmp_path / "g.dot").read_text().startswith("graph dependency")


def test_inspect_renders_svg(tmp_path, capsys):
    rc = main(["inspect", "models:lenet5", "--svg", str(tmp_path / "g.svg")])
    assert rc == 0
    assert "<svg" in (tmp_path / "g.svg").read_text()


def test_bad_budget_is_a_clean_error(capsys):
    rc = main(["prune", "torchvision:resnet18", "--budget", "1.5", "--input-shape", "1,3,32,32"])
    assert rc == 2
    assert "budget must be" in capsys.readouterr().err


def test_bad_model_spec():
    with pytest.raises(SystemExit):
        main(["inspect", "resnet18"])


def test_timm_model_that_fx_cannot_trace_needs_auto_leaf(capsys):
    args = ["prune", "timm:mobilevitv2_050", "--budget", "0.6", "--input-shape", "1,3,64,64"]
    assert main(args) == 2
    assert "--auto-leaf" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="kept opaque"):
        assert main(args + ["--auto-leaf"]) == 0
    assert "MACs" in capsys.readouterr().out

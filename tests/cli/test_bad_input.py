"""Every bad input gives ONE line on stderr, ``graphprune: error: <what> — <what to do>``, exit 2, no traceback.

Each case runs ``graphprune.cli.main`` in-process on a tiny model (a ``net.py:build`` factory or
``models:lenet5``); one case runs ``python -m graphprune.cli`` in a subprocess for the real exit status.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from graphprune.cli import main
from graphprune.train import save_checkpoint

NET = """import torch.nn as nn
def build():
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 4))
"""


@pytest.fixture
def net(tmp_path) -> str:
    src = tmp_path / "net.py"
    src.write_text(NET)
    return f"{src}:build"


def bad(capsys, *argv: str) -> str:
    """Run the command line; assert the one-line user error; return that line."""
    rc = main(list(argv))
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert rc == 2, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("graphprune: error: ") and " — " in lines[0]
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


# ---- the model ------------------------------------------------------------------------------------------
def test_missing_checkpoint_file(capsys, tmp_path):
    line = bad(capsys, "inspect", f"checkpoint:{tmp_path / 'nope.pt'}")
    assert "nope.pt does not exist" in line


def test_misspelled_bundled_model_suggests_the_name(capsys):
    assert "did you mean models:lenet5" in bad(capsys, "inspect", "models:lenet")


def test_misspelled_torchvision_and_timm_models_suggest_names(capsys):
    assert "did you mean torchvision:resnet18" in bad(capsys, "inspect", "torchvision:resnet19")
    pytest.importorskip("timm")
    assert "did you mean timm:resnet18" in bad(capsys, "inspect", "timm:resnt18")


def test_unknown_source_and_spec_without_a_name(capsys):
    assert "did you mean torchvision" in bad(capsys, "inspect", "torchvison:resnet18")
    assert "source:name" in bad(capsys, "inspect", "resnet18")


def test_factory_file_without_that_function(capsys, net):
    path = net.rpartition(":")[0]
    assert "has no function 'nosuch'" in bad(capsys, "inspect", f"{path}:nosuch")
    assert f"did you mean {path}:build" in bad(capsys, "inspect", f"{path}:buld")


def test_factory_file_that_raises_or_is_missing(capsys, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise ImportError('needs a package you do not have')\n")
    assert "running" in bad(capsys, "inspect", f"{broken}:build")
    assert "no such file" in bad(capsys, "inspect", f"{tmp_path / 'absent.py'}:build")


@pytest.mark.parametrize("shape", ["0,3,8,8", "1,3,-8,8", "1,3,eight,8"])
def test_bad_input_shape(capsys, net, shape):
    assert "--input-shape" in bad(capsys, "inspect", net, "--input-shape", shape)


def test_input_shape_the_model_cannot_run(capsys):
    line = bad(capsys, "prune", "models:lenet5", "--input-shape", "1,3,32,32")
    assert "does not run on an input of shape (1, 3, 32, 32)" in line and "--input-shape" in line


# ---- checkpoints ----------------------------------------------------------------------------------------
def test_checkpoint_naming_an_unknown_model(capsys, tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, torch.nn.Linear(2, 2), "lenet6")
    assert "names model 'lenet6'" in bad(capsys, "inspect", f"checkpoint:{path}")


def test_checkpoint_with_wrong_kwargs(capsys, tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, torch.nn.Linear(2, 2), "lenet5", kwargs={"width_multiplier": 3})
    assert "does not rebuild lenet5" in bad(capsys, "inspect", f"checkpoint:{path}")


def test_file_that_is_not_a_checkpoint(capsys, tmp_path):
    junk, plain = tmp_path / "junk.pt", tmp_path / "plain.pt"
    junk.write_bytes(b"not a torch file at all")
    torch.save({"weight": torch.zeros(2)}, plain)
    assert "is not a graphprune checkpoint" in bad(capsys, "inspect", f"checkpoint:{junk}")
    assert "is not a graphprune checkpoint" in bad(capsys, "inspect", f"checkpoint:{plain}")


# ---- --weights ------------------------------------------------------------------------------------------
def test_missing_weights_file(capsys, net, tmp_path):
    assert "does not exist" in bad(capsys, "prune", net, "--input-shape", "1,3,8,8", "--weights",
                                   str(tmp_path / "w.pt"))


def test_weights_that_are_not_a_state_dict(capsys, net, tmp_path):
    path = tmp_path / "w.pt"
    torch.save([1, 2, 3], path)
    assert "not a state_dict" in bad(capsys, "prune", net, "--input-shape", "1,3,8,8", "--weights", str(path))


def test_mismatched_state_dict_names_the_keys(capsys, net, tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"0.weight": torch.zeros(16, 3, 3, 3), "head.bias": torch.zeros(4)}, path)
    line = bad(capsys, "prune", net, "--input-shape", "1,3,8,8", "--weights", str(path))
    assert "missing 10 keys (0.bias, 1.bias, 1.num_batches_tracked, …)" in line
    assert "unexpected 1 keys (head.bias)" in line


def test_state_dict_with_the_wrong_widths(capsys, net, tmp_path):
    from graphprune.cli.models import load_model

    model, _ = load_model(net)
    state = model.state_dict()
    state["0.weight"] = torch.zeros(16, 3, 5, 5)
    torch.save(state, tmp_path / "w.pt")
    line = bad(capsys, "prune", net, "--input-shape", "1,3,8,8", "--weights", str(tmp_path / "w.pt"))
    assert "size mismatch for 0.weight" in line


def test_pickled_module_needs_trust_file(capsys, net, tmp_path):
    path = tmp_path / "w.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    assert "--trust-file" in bad(capsys, "prune", net, "--input-shape", "1,3,8,8", "--weights", str(path))


# ---- options --------------------------------------------------------------------------------------------
def test_misspelled_strategy_suggests_the_name(capsys, net):
    line = bad(capsys, "prune", net, "--strategy", "globl")
    assert "did you mean global" in line and "sensitivity" in line  # the choices come from the registries


@pytest.mark.parametrize("strategy", ["sensitivity", "evolutionary", "rl", "bn-ista", "hsn"])
def test_strategy_that_needs_data_without_data(capsys, net, strategy):
    line = bad(capsys, "prune", net, "--input-shape", "1,3,8,8", "--strategy", strategy)
    assert f"--strategy {strategy}" in line and "needs data" in line and "--data" in line


def test_data_driven_importance_without_data(capsys, net):
    assert "needs data" in bad(capsys, "prune", net, "--input-shape", "1,3,8,8", "--importance", "taylor")


def test_data_with_an_input_size_it_cannot_feed(capsys, net):
    line = bad(capsys, "prune", net, "--input-shape", "1,3,8,8", "--strategy", "sensitivity", "--data",
               "fashion_mnist")
    assert "28x28" in line


def test_budget_out_of_range(capsys, net):
    assert "budget must be" in bad(capsys, "prune", net, "--budget", "1.5")


def test_cuda_without_a_gpu(capsys, net, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "--device cuda" in bad(capsys, "prune", net, "--device", "cuda")


# ---- output paths: checked before the job ---------------------------------------------------------------
def test_output_path_that_is_a_folder_fails_before_the_job(capsys, net, tmp_path):
    line = bad(capsys, "prune", net, "--input-shape", "1,3,8,8", "--report", str(tmp_path))
    assert "is a folder" in line
    assert capsys.readouterr().out == ""  # no report table: the job never ran


def test_output_folder_that_cannot_be_created(capsys, net, tmp_path):
    (tmp_path / "file").write_text("x")
    assert "cannot create the folder" in bad(capsys, "inspect", net, "--input-shape", "1,3,8,8", "--dot",
                                             str(tmp_path / "file" / "g.dot"))


def test_two_outputs_on_one_file(capsys, net, tmp_path):
    out = str(tmp_path / "same")
    assert "both write" in bad(capsys, "prune", net, "--input-shape", "1,3,8,8", "--report", out, "--onnx", out)


# ---- bugs, --debug and the process exit status ----------------------------------------------------------
def test_internal_error_is_one_line_and_exit_1(capsys, net, monkeypatch):
    import graphprune.export.report as report

    def broken(*args, **kwargs):
        raise KeyError("some internal table")

    monkeypatch.setattr(report, "run_job", broken)
    assert main(["prune", net, "--input-shape", "1,3,8,8"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "graphprune bug" in err and "KeyError" in err and "--debug" in err
    with pytest.raises(KeyError):
        main(["prune", net, "--input-shape", "1,3,8,8", "--debug"])


def test_debug_reraises_user_errors(net):
    from graphprune.cli.errors import CliError

    with pytest.raises(CliError):
        main(["inspect", "models:lenet", "--debug"])


def test_exit_status_of_the_module_entry_point(tmp_path):
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "graphprune.cli", "inspect", "models:lenet"], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphprune: error: no bundled model 'lenet'")


def test_inspect_strategy_without_budget(capsys, net):
    assert "--budget" in bad(capsys, "inspect", net, "--input-shape", "1,3,8,8", "--strategy", "uniform")


BAKED = """import torch.nn as nn
class Baked(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 16, 3), nn.Linear(16, 4)
    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)).view(-1, 16))
def build():
    return Baked()
"""


def test_output_module_on_code_that_bakes_a_size(capsys, tmp_path):
    src = tmp_path / "baked.py"
    src.write_text(BAKED)
    rc = main(["prune", f"{src}:build", "--input-shape", "1,3,8,8", "--round-to", "1", "--output", "module"])
    err = capsys.readouterr().err
    line = err.split("graphprune: error: ")[-1]  # after the progress bar, which ran until the rewrite
    assert rc == 2 and "Traceback" not in err and err.count("graphprune: error: ") == 1
    assert "node 'view'" in line and " — pass --output auto" in line

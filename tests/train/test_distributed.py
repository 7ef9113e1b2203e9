"""Two gloo processes under torchrun reproduce the one-process run with the same global batch."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from graphprune.train import ddp

REPO_ROOT = Path(__file__).resolve().parents[2]
# LeNet-5 has no BatchNorm, whose per-rank batch statistics would (legitimately) differ.
ARGS = ["--model", "lenet5", "--dataset", "synthetic", "--train-subset", "256", "--test-subset", "64",
        "--epochs", "2", "--batch-size", "64", "--lr", "0.05", "--seed", "3", "--no-progress"]


def _run_one_process(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    for variable in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(variable, raising=False)
    out, log = tmp_path / "one.pt", tmp_path / "one.json"
    ddp.main(ARGS + ["--out", str(out), "--log-json", str(log)])
    return out, log


def _run_two_processes(tmp_path: Path) -> tuple[Path, Path]:
    out, log = tmp_path / "two.pt", tmp_path / "two.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    ddp.launch(ARGS + ["--out", str(out), "--log-json", str(log)], nproc=2, timeout=600, env=env)
    return out, log


def test_two_process_ddp_matches_one_process(tmp_path, monkeypatch):
    one_out, one_log = _run_one_process(tmp_path, monkeypatch)
    two_out, two_log = _run_two_processes(tmp_path)
    single = ddp.load_module(one_out, trusted=True).state_dict()  # our own files
    double = ddp.load_module(two_out, trusted=True).state_dict()
    assert single.keys() == double.keys()
    for name in single:
        torch.testing.assert_close(double[name], single[name], rtol=1e-4, atol=1e-5, msg=name)
    one, two = json.loads(one_log.read_text()), json.loads(two_log.read_text())
    assert two["meta"]["world_size"] == 2 and one["meta"]["world_size"] == 1
    for a, b in zip(one["epochs"], two["epochs"], strict=True):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4
        assert a["train_acc"] == b["train_acc"] and a["test_acc"] == b["test_acc"]

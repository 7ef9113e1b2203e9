"""The one table of strategies (graphprune/strategies.py): complete, documented, read by every front end."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import graphprune
from graphprune.strategies import KINDS, REGISTRY, names_of_kind, strategy_row

ROOT = Path(__file__).resolve().parents[1]


def test_readme_names_every_strategy():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in REGISTRY if not re.search(rf"`{re.escape(name)}`|\"{re.escape(name)}\"", readme)]
    assert not missing, f"README.md does not name strategies {missing}"


def test_cli_choices_and_kinds_are_the_registry():
    from graphprune.cli.parser import build_parser, strategy_kinds

    sub = build_parser()._subparsers._group_actions[0].choices["prune"]
    choices = next(a for a in sub._actions if a.dest == "strategy").choices
    assert list(choices) == list(REGISTRY)
    assert strategy_kinds() == {name: row.kind for name, row in REGISTRY.items()}
    assert {row.kind for row in REGISTRY.values()} == set(KINDS)


def test_every_row_has_its_implementation_and_nothing_else_has_one():
    from graphprune.learners.dispatch import LEARNERS
    from graphprune.search.allocate import STRATEGIES
    from graphprune.search.registry import SEARCHES

    assert set(STRATEGIES) == set(names_of_kind("allocation"))
    assert set(SEARCHES) == set(names_of_kind("search"))
    assert LEARNERS == {name: REGISTRY[name].run() for name in names_of_kind("learner")}
    for row in REGISTRY.values():
        assert row.description and "\n" not in row.description
        assert row.needs == {"allocation": (), "search": ("eval_fn/calib_data",), "learner": ("train_data",)}[row.kind]


def test_search_layer_and_learned_row_need_no_learners():
    """'learned' used to exist only after graphprune.learners was imported (it added itself to the table)."""
    code = ("import sys, torch, graphprune, graphprune.strategies, graphprune.options\n"
            "m = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.Conv2d(16, 8, 3))\n"
            "graphprune.prune(m, 0.5, torch.zeros(1, 3, 8, 8), strategy='learned', round_to=1)\n"
            "print(sorted(k for k in sys.modules if k.startswith('graphprune.learners')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name, kwargs, message", [
    ("gal", {}, "strategy 'gal' trains on train_data"),
    ("hsn", {"eval_fn": lambda m: 0.0}, "strategy 'hsn' trains on train_data"),
    ("sensitivity", {}, "strategy 'sensitivity' scores candidates: pass eval_fn"),
    ("uniform", {"train_data": [1]}, "train_data= selects a training-time learner"),
    ("rl", {"calib_data": [1], "train_data": [1]}, "train_data= selects a training-time learner"),
    ("global", {"train_data": [1], "supernet": True}, "scores none"),
    ("slimming", {"train_data": [1], "supernet": True}, "scores none"),
])
def test_prune_refuses_a_strategy_without_its_inputs_before_any_work(name, kwargs, message):
    conv = torch.nn.Conv2d(1, 4, 3)
    with pytest.raises(ValueError, match=re.escape(message)):
        graphprune.prune(conv, 0.5, torch.zeros(1, 1, 8, 8), strategy=name, **kwargs)


def test_unknown_names_list_the_table_by_kind():
    with pytest.raises(ValueError, match=r"unknown strategy 'annealing'.*'learned'.*'rl'.*'hsn'"):
        strategy_row("annealing")
    with pytest.raises(TypeError, match="strategy name"):
        strategy_row(3)


def test_a_learner_row_builds_its_learner_with_options():
    learner = REGISTRY["slimming"].learner({"epochs": 3})
    assert type(learner).__name__ == "NetworkSlimming" and learner.config.epochs == 3
    with pytest.raises(TypeError, match="not a training-time learner"):
        REGISTRY["global"].learner()

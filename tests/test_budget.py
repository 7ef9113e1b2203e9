"""Budgets: every real scalar in (0, 1] is accepted as a float; everything else is refused by name."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune import Budget, BudgetError
from graphprune.budget import as_budget


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1)).eval()


@pytest.mark.parametrize("value", [np.float32(0.5), np.float64(0.5), torch.tensor(0.5), torch.tensor(0.5).double(),
                                   0.5, 1, np.int64(1), torch.tensor(1)])
def test_real_scalars_are_budgets(value):
    b = as_budget(value)
    assert type(b.ratio) is float and b.ratio == float(value) and b.metric == "macs"


def test_numpy_and_tensor_budgets_prune_to_the_same_model():
    x = torch.randn(1, 3, 8, 8)
    want = graphprune.prune(_net(), 0.5, x)
    for value in (np.float32(0.5), np.float64(0.5), torch.tensor(0.5)):
        got = graphprune.prune(_net(), value, x)
        assert got.get_submodule("0").out_channels == want.get_submodule("0").out_channels
        with torch.no_grad():
            assert torch.equal(got(x), want(x))


def test_budget_constructors_take_scalars_too():
    assert Budget.params(np.float32(0.25)).ratio == 0.25
    assert Budget(torch.tensor(0.75), "macs") == Budget.macs(0.75)  # stored as a float: equal and hashable
    assert hash(Budget(np.float64(0.75))) == hash(Budget(0.75))


@pytest.mark.parametrize("value", [True, False, np.bool_(True), torch.tensor(True), "0.5", None, [0.5],
                                   torch.tensor([0.5]), torch.zeros(2), complex(0.5, 0)])
def test_non_numbers_are_refused(value):
    with pytest.raises(BudgetError, match=r"budget must be a float in \(0, 1\] or a Budget"):
        as_budget(value)


@pytest.mark.parametrize("value", [0, 0.0, -0.1, 1.0001, 2, math.nan, math.inf, -math.inf, np.float32("nan"),
                                   torch.tensor(1.5)])
def test_out_of_range_is_refused(value):
    with pytest.raises(BudgetError, match=r"fraction of macs to keep in \(0, 1\]"):
        as_budget(value)
    with pytest.raises(BudgetError, match=r"fraction of params to keep in \(0, 1\]"):
        Budget.params(value)


def test_bad_metric_is_refused():
    with pytest.raises(BudgetError, match="metric must be one of .*'macs', 'params', 'latency'"):
        Budget(0.5, "flops")

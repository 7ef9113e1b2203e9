"""Bad arguments to prune / apply_plan / inspect get graphprune's documented errors, named, up front.

The property test at the end draws whole option sets (valid and not) and checks the contract: a working
module within budget, or BudgetError / PlanError / TraceError / a ValueError or TypeError naming the argument;
never an IndexError, KeyError, AttributeError or RewriteError from deep inside.
"""
import math
import re
import types
from functools import lru_cache

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import graphprune
from graphprune import BudgetError, Plan, PlanError, RewriteError, TraceError
from graphprune.options import check_prune_options


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = self.bn1(self.conv1(x)).relu()
        x = self.bn2(self.conv2(x)).relu()
        return self.fc(x.mean((2, 3)))


def _tiny():
    torch.manual_seed(0)
    return TinyNet().eval(), torch.randn(1, 3, 8, 8)


def _no_params():
    class Elementwise(nn.Module):
        def forward(self, x):
            return x.relu() + 1

    return Elementwise(), torch.randn(2, 3)


# ---- floors: round_to, min_channels, max_prune_ratio ---------------------------------------------------
@pytest.mark.parametrize("name, value, valid", [
    ("round_to", 0, r">= 1 or 'auto'"), ("round_to", -8, r">= 1 or 'auto'"), ("round_to", 2.5, r">= 1"),
    ("round_to", 8.0, r">= 1"), ("round_to", True, r">= 1"), ("round_to", "8", r">= 1"),
    ("min_channels", 0, r">= 1"), ("min_channels", -1, r">= 1"), ("min_channels", 1.5, r">= 1"),
    ("max_prune_ratio", 1.5, r"\[0, 1\]"), ("max_prune_ratio", -0.1, r"\[0, 1\]"),
    ("max_prune_ratio", math.nan, r"\[0, 1\]"), ("max_prune_ratio", "0.5", r"\[0, 1\]"),
])
def test_bad_floors_are_refused_by_name(name, value, valid):
    model, x = _tiny()
    with pytest.raises(ValueError, match=rf"{name} must be .*{valid}.*got {value!r}"):
        graphprune.prune(model, 0.5, x, **{name: value})


def test_good_floors_in_canonical_form():
    model, _ = _tiny()
    opts = check_prune_options(model, np.float32(0.5), round_to=np.int64(8), min_channels=2, max_prune_ratio=1,
                               ignored_layers="fc")
    assert (opts.round_to, opts.min_channels, opts.max_prune_ratio, opts.ignored_layers) == (8, 2, 1.0, ("fc",))
    assert type(opts.round_to) is int and opts.budget.ratio == 0.5
    assert check_prune_options(model, 0.5, round_to="auto").round_to == "auto"  # another branch implements it


def test_max_prune_ratio_is_honoured_at_its_ends():
    model, x = _tiny()
    none = graphprune.prune(model, 1.0, x, max_prune_ratio=0.0)
    assert none.get_submodule("conv1").out_channels == 16
    with pytest.raises(BudgetError):  # no group may lose a channel, so 0.5 is out of reach
        graphprune.prune(model, 0.5, x, max_prune_ratio=0.0)


# ---- ignored_layers ---------------------------------------------------------------------------------------
def test_single_string_is_one_module_name():
    model, x = _tiny()
    pruned = graphprune.prune(model, 0.5, x, ignored_layers="conv1")
    assert pruned.get_submodule("conv1").out_channels == 16
    assert pruned.get_submodule("conv2").out_channels < 16


def test_none_and_generators_are_accepted():
    model, x = _tiny()
    a = graphprune.prune(model, 0.5, x, ignored_layers=None)
    b = graphprune.prune(model, 0.5, x, ignored_layers=(n for n in ["conv1"]))
    assert a.get_submodule("conv1").out_channels < 16 == b.get_submodule("conv1").out_channels


@pytest.mark.parametrize("value, message", [
    (5, "ignored_layers takes qualified module names"), ([1], "got int"),
    ([nn.Linear(1, 1)], "pass its name, e.g. 'fc', not the module"),
])
def test_junk_ignored_layers_are_refused(value, message):
    model, x = _tiny()
    with pytest.raises(TypeError, match=message):
        graphprune.prune(model, 0.5, x, ignored_layers=value)


def test_unknown_ignored_layer_is_still_refused():
    model, x = _tiny()
    with pytest.raises(ValueError, match=r"ignored_layers \['nope'\] are not modules"):
        graphprune.prune(model, 0.5, x, ignored_layers="nope")


# ---- strategy / importance types ----------------------------------------------------------------------------
def test_strategy_and_importance_types():
    model, x = _tiny()
    with pytest.raises(TypeError, match="strategy must be a strategy name"):
        graphprune.prune(model, 0.5, x, strategy=["global"])
    with pytest.raises(TypeError, match="importance must be a criterion name"):
        graphprune.prune(model, 0.5, x, importance=3)


@pytest.mark.parametrize("budget", [0.5, 1.0])  # 1.0 uses neither, but a typo should not wait for budget 0.9
def test_unknown_strategy_and_importance_names(budget):
    model, x = _tiny()
    with pytest.raises(ValueError, match=r"unknown strategy 'glbal'; data-free: .*'global'.*learners"):
        graphprune.prune(model, budget, x, strategy="glbal")
    with pytest.raises(ValueError, match=r"unknown importance 'l3'; choose one of \[.*'l2'"):
        graphprune.prune(model, budget, x, importance="l3")
    assert graphprune.prune(model, budget, x, importance=lambda graph: np.ones(graph.n_units)) is not None


# ---- nothing to prune, empty plans --------------------------------------------------------------------------
def _assert_equal_copy(copy, model, x):
    assert copy is not model
    with torch.no_grad():
        assert torch.equal(copy(x), model(x))


def test_budget_one_with_nothing_prunable_returns_a_copy():
    model, x = _no_params()
    _assert_equal_copy(graphprune.prune(model, 1.0, x), model, x)


@pytest.mark.parametrize("make", [_no_params, _tiny])
def test_empty_plan_returns_a_copy(make):
    model, x = make()
    _assert_equal_copy(graphprune.apply_plan(model, Plan({}), x), model, x)


def test_apply_plan_wants_a_plan():
    model, x = _tiny()
    with pytest.raises(TypeError, match=r"plan must be a graphprune.Plan, got str: load it first"):
        graphprune.apply_plan(model, "plan.json", x)


# ---- where the weights live --------------------------------------------------------------------------------
def test_meta_model_is_refused_with_the_way_out():
    with torch.device("meta"):
        model = TinyNet().eval()
    x = torch.randn(1, 3, 8, 8)
    for call in (lambda: graphprune.prune(model, 0.5, x), lambda: graphprune.apply_plan(model, Plan({}), x)):
        with pytest.raises(ValueError, match=r"'conv1.weight' is on the meta device.*to_empty\(device='cpu'\)"):
            call()


def test_one_meta_buffer_is_named():
    model, x = _tiny()
    model.bn2.running_var = torch.empty(16, device="meta")
    with pytest.raises(ValueError, match=r"prune: model tensor 'bn2.running_var' is on the meta device"):
        graphprune.prune(model, 0.5, x)


def test_inspect_and_count_cost_work_on_meta_models():
    """They read shapes only, so a model too big to materialise can still be costed."""
    with torch.device("meta"):
        meta = TinyNet().eval()
    real, x = _tiny()
    assert graphprune.count_cost(meta, x) == graphprune.count_cost(real, x)


def test_several_devices_are_refused():
    class Spread(TinyNet):
        def named_parameters(self, *args, **kwargs):  # NOTE: no second device here; only .device is read
            yield from super().named_parameters(*args, **kwargs)
            yield "fc.extra", types.SimpleNamespace(device=torch.device("cuda", 0))

    model, x = Spread().eval(), torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"several devices \('conv1.weight' on cpu, 'fc.extra' on cuda:0\)"):
        graphprune.prune(model, 0.5, x)


# ---- property test: random option sets ------------------------------------------------------------------
NAMES = ["conv1", "bn1", "conv2", "bn2", "fc"]
REAL_BUDGETS = st.floats(0.2, 1.0)
# argument -> (valid values, values that may be anything, valid or not)
OPTIONS = {
    "budget": (st.one_of(REAL_BUDGETS, REAL_BUDGETS.map(np.float32), REAL_BUDGETS.map(torch.tensor)),
               st.one_of(st.floats(allow_nan=True, allow_infinity=True), REAL_BUDGETS.map(np.float64),
                         st.sampled_from(["0.5", None, True, torch.tensor([0.5]), torch.tensor(True)]))),
    "strategy": (st.sampled_from(["global", "uniform", "global_raw"]),
                 st.sampled_from(["bogus", "sensitivity", 3, None, ["global"]])),
    "importance": (st.sampled_from(["l1", "l2", "bn", "random"]), st.sampled_from(["bogus", "taylor", 3, None])),
    "round_to": (st.sampled_from([1, 1, 2, 3, 4, 8, "auto"]),
                 st.one_of(st.integers(-3, 16), st.sampled_from(["auto", "8", 2.0, 0.5, None, True]))),
    "min_channels": (st.integers(1, 4), st.one_of(st.integers(-2, 20), st.sampled_from([1.5, None]))),
    "max_prune_ratio": (st.one_of(st.floats(0.6, 1.0), st.floats(0.0, 1.0).map(np.float32)),
                        st.one_of(st.floats(-0.5, 1.5), st.sampled_from([math.nan, "0.9", None]))),
    "ignored_layers": (st.one_of(st.sampled_from(NAMES + [None, ()]), st.lists(st.sampled_from(NAMES), max_size=2)),
                       st.one_of(st.sampled_from(["nope", 5, None, [1], "f"]),
                                 st.lists(st.sampled_from(NAMES + ["nope"]), max_size=3))),
}


@st.composite
def prune_options(draw):
    """About a third all valid, a third with one argument drawn from anything, a third anything."""
    mode = draw(st.sampled_from(["valid", "one_any", "all_any"]))
    odd = draw(st.sampled_from(sorted(OPTIONS))) if mode == "one_any" else None
    return {name: draw(any_ if mode == "all_any" or name == odd else valid)
            for name, (valid, any_) in OPTIONS.items()}


ALLOWED = (BudgetError, PlanError, TraceError, ValueError, TypeError)
FORBIDDEN = (IndexError, KeyError, AttributeError, RewriteError)


@lru_cache(maxsize=1)
def _auto_round_to_supported() -> bool:
    model, x = _tiny()
    try:
        graphprune.prune(model, 0.9, x, round_to="auto")
    except TypeError:
        return False
    return True


def _is_int(v, low):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= low


def _invalid_arguments(o: dict) -> set[str]:
    """The arguments the contract says are invalid, judged independently of graphprune's checks."""
    b = o["budget"]
    real = isinstance(b, (float, np.floating)) or (isinstance(b, torch.Tensor) and b.dim() == 0
                                                   and b.dtype != torch.bool)
    bad = set()
    if not (real and 0 < float(b) <= 1):
        bad.add("budget")
    if o["strategy"] not in ("global", "uniform", "global_raw"):
        bad.add("strategy")
    if o["importance"] not in ("l1", "l2", "bn", "random"):
        bad.add("importance")
    if not (_is_int(o["round_to"], 1) or o["round_to"] == "auto"):
        bad.add("round_to")
    if not _is_int(o["min_channels"], 1):
        bad.add("min_channels")
    m = o["max_prune_ratio"]
    if not (isinstance(m, (float, np.floating)) and 0 <= m <= 1):
        bad.add("max_prune_ratio")
    names = (o["ignored_layers"],) if isinstance(o["ignored_layers"], str) else o["ignored_layers"]
    if names is not None and not (isinstance(names, (list, tuple)) and all(n in NAMES for n in names)):
        bad.add("ignored_layers")
    return bad


def _check_result(pruned, model, x, budget):
    dense, cost = graphprune.count_cost(model, x), graphprune.count_cost(pruned, x)
    assert cost.macs / dense.macs <= float(budget) + 1e-6
    with torch.no_grad():
        out = pruned(x)
    assert out.shape == (1, 4) and torch.isfinite(out).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prune_options())
def test_random_options_work_or_fail_by_name(options):
    model, x = _tiny()
    invalid = _invalid_arguments(options)
    try:
        pruned = graphprune.prune(model, example_inputs=x, **options)
    except FORBIDDEN as exc:
        raise AssertionError(f"{type(exc).__name__} leaked out of prune({options})") from exc
    except ALLOWED as exc:
        if options["round_to"] == "auto" and not invalid and not _auto_round_to_supported():
            event("round_to='auto' not implemented here")
            return  # NOTE: round_to='auto' passes the checks but is implemented on another branch
        if invalid:
            event(f"refused: {type(exc).__name__}")
            assert any(name in str(exc) for name in invalid), (invalid, exc)
        else:  # valid options may still ask for a budget the floors cannot reach: then it says how far
            event("valid, budget out of reach")
            reach = re.search(r"below what pruning can reach here: ([0-9.]+)", str(exc)) if isinstance(
                exc, BudgetError) else None
            assert reach and float(reach.group(1)) > float(options["budget"]), exc
        return
    assert not invalid, f"prune accepted invalid {invalid}: {options}"
    event("pruned within budget")
    _check_result(pruned, model, x, options["budget"])


@pytest.mark.parametrize("budget", [0.5, 1.0])
def test_data_driven_importance_without_calib_data_is_refused_at_any_budget(budget):
    model, x = _tiny()
    with pytest.raises(ValueError, match="importance 'taylor' scores channels on data: pass calib_data"):
        graphprune.prune(model, budget, x, importance="taylor")
    with pytest.raises(ValueError, match="calib_data"):
        graphprune.prune(model, budget, x, importance="group_fisher_latency")

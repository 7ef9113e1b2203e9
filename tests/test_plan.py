"""Plans read from JSON or built in Python are type-checked: bad input is a PlanError naming the key."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphprune
from graphprune.plan import PLAN_FORMAT_VERSION, Plan, PlanError


class _Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1)
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.head(torch.relu(self.conv2(x)).mean((2, 3)))


_X = torch.randn(1, 3, 8, 8)
_GRAPH = graphprune.inspect(_Small().eval(), _X)
_NAMES = [g.name for g in _GRAPH.groups]


def _valid_body() -> dict:
    return {"format": PLAN_FORMAT_VERSION, "torch": torch.__version__, "kept": {_NAMES[0]: [0, 2, 5]}, "info": {}}


def test_round_trip_and_mask():
    plan = Plan.from_json(json.dumps(_valid_body()))
    assert plan.kept == {_NAMES[0]: (0, 2, 5)}
    assert Plan.from_json(plan.to_json()) == plan
    mask = plan.keep_mask(_GRAPH)
    group = _GRAPH.groups[0]
    assert mask[group.units].tolist() == [u in (0, 2, 5) for u in group.unit_ids]


def test_bools_are_not_unit_ids():
    body = _valid_body() | {"kept": {_NAMES[0]: [True, False]}}
    with pytest.raises(PlanError, match=r"'kept'.*unit ids.*True \(bool\)"):
        Plan.from_json(json.dumps(body))


@pytest.mark.parametrize("change, message", [
    (lambda b: [b], "JSON object"),
    (lambda b: b | {"format": True}, "'format' must be 1"),
    (lambda b: b | {"format": 1.0}, "'format' must be 1"),
    (lambda b: b | {"format": "1"}, "'format' must be 1"),
    (lambda b: {k: v for k, v in b.items() if k != "format"}, "'format' must be 1"),
    (lambda b: {k: v for k, v in b.items() if k != "kept"}, "no 'kept'"),
    (lambda b: b | {"kept": [[0, 1]]}, "'kept' must map group names"),
    (lambda b: b | {"kept": {_NAMES[0]: "012"}}, r"'kept'\[.*\] must be a list"),
    (lambda b: b | {"kept": {_NAMES[0]: {"0": 1}}}, r"'kept'\[.*\] must be a list"),
    (lambda b: b | {"kept": {_NAMES[0]: [0, 1.5]}}, r"unit ids.*1\.5 \(float\)"),
    (lambda b: b | {"kept": {_NAMES[0]: [0, "1"]}}, r"unit ids.*'1' \(str\)"),
    (lambda b: b | {"kept": {_NAMES[0]: [0, None]}}, r"unit ids.*None"),
    (lambda b: b | {"kept": {_NAMES[0]: [0, -1]}}, "negative unit id -1"),
    (lambda b: b | {"kept": {_NAMES[0]: [3, 1, 3]}}, r"unit ids \[3\] more than once"),
    (lambda b: b | {"info": [1]}, "'info' must be a JSON object"),
    (lambda b: b | {"kep": {}}, r"unknown keys \['kep'\]"),
])
def test_json_with_wrong_types_is_a_plan_error(change, message):
    with pytest.raises(PlanError, match=message):
        Plan.from_json(json.dumps(change(_valid_body())))


@pytest.mark.parametrize("text", ["", "{", "not json", b"\xff\xfe"])
def test_text_that_is_not_json(text):
    with pytest.raises(PlanError, match="must be JSON"):
        Plan.from_json(text)


@pytest.mark.parametrize("kept, info, message", [
    ({"g": [True]}, {}, "bool"),
    ({"g": (0, 0)}, {}, "more than once"),
    ({"g": "01"}, {}, "must be a list"),
    ({1: (0,)}, {}, "group-name strings"),
    ([("g", (0,))], {}, "'kept' must map"),
    ({"g": (0,)}, [], "'info' must be a dict"),
    ({"g": (np.float32(1.0),)}, {}, "float32"),
])
def test_python_constructor_checks_types(kept, info, message):
    with pytest.raises(PlanError, match=message):
        Plan(kept, info)


def test_python_constructor_normalises_ids():
    plan = Plan({"g": np.array([4, 1], dtype=np.int64)})
    assert plan.kept == {"g": (1, 4)} and all(type(u) is int for u in plan.kept["g"])


def test_keep_mask_rechecks_a_mutated_plan_and_unknown_names():
    plan = Plan({_NAMES[0]: (0,)})
    plan.kept[_NAMES[0]] = (True,)
    with pytest.raises(PlanError, match="bool"):
        plan.keep_mask(_GRAPH)
    with pytest.raises(PlanError, match="does not have"):
        Plan({"no.such:0": (0,)}).keep_mask(_GRAPH)
    with pytest.raises(PlanError, match="keep no channel"):
        Plan({_NAMES[0]: ()}).keep_mask(_GRAPH)


def test_save_and_load_atomic(tmp_path):
    plan = Plan({_NAMES[0]: (1, 2)}, {"budget": 0.5})
    path = plan.save(tmp_path / "p.json")
    assert Plan.load(path) == plan
    path.write_text('{"format": 1, "kept": {"a": [true]}}')
    with pytest.raises(PlanError, match=r"p\.json: plan 'kept'"):
        Plan.load(path)


# --- fuzz: from_json and keep_mask either work or raise PlanError, nothing else -----------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**70) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12)
_unit_lists = st.lists(st.integers(-2, 12) | st.booleans() | _json_values, max_size=6) | _json_values
_mutated_plans = st.fixed_dictionaries(
    {"format": st.just(PLAN_FORMAT_VERSION) | _json_values,
     "kept": st.dictionaries(st.sampled_from(_NAMES) | st.text(max_size=8), _unit_lists, max_size=4) | _json_values},
    optional={"info": st.just({}) | _json_values, "torch": st.just("2"), "extra": _json_values})


def _must_work_or_raise_plan_error(text):
    try:
        Plan.from_json(text).keep_mask(_GRAPH)
    except PlanError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_json_values.map(json.dumps), _mutated_plans.map(json.dumps), st.text(max_size=30)))
def test_fuzz_plan_json(text):
    _must_work_or_raise_plan_error(text)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(_NAMES), st.lists(st.integers(0, 12), unique=True, min_size=1), max_size=4))
def test_fuzz_wellformed_plans_mask_or_name_the_bad_unit(kept):
    plan = Plan.from_json(json.dumps({"format": PLAN_FORMAT_VERSION, "kept": kept}))
    sizes = {g.name: g.n_units for g in _GRAPH.groups}
    try:
        mask = plan.keep_mask(_GRAPH)
    except PlanError as error:
        assert any(max(ids) >= sizes[name] for name, ids in kept.items()), error
        return
    assert int(mask.sum()) == sum(len(ids) for ids in kept.values()) + sum(
        sizes[n] for n in _NAMES if n not in kept)

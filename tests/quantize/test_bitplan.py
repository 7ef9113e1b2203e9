"""Bit-width plans: JSON round trip, 0-bit units as pruned channels, and specific errors."""
import json

import numpy as np
import pytest

import graphprune
from graphprune.plan import Plan, PlanError
from graphprune.quantize import BitPlan
from quant_nets import EXAMPLE


def test_round_trip_through_json(net, tmp_path):
    graph = graphprune.inspect(net, EXAMPLE)
    unit_bits = np.full(graph.n_units, 8)
    unit_bits[graph.groups[0].units.start + 1] = 0
    plan = BitPlan.from_unit_bits(graph, unit_bits, {"conv1": 32, "fc": 8}, budget="0.2 of size")
    path = plan.save(tmp_path / "plan.json")
    again = BitPlan.load(path)
    assert again == plan
    assert again.bits_of("conv1") == 32 and again.bits_of("down") == 8
    assert BitPlan.from_json(again.to_json()).to_json() == plan.to_json()


def test_zero_bit_units_are_the_pruned_channels(net):
    graph = graphprune.inspect(net, EXAMPLE)
    unit_bits = np.full(graph.n_units, 8)
    dropped = [g.units.start for g in graph.groups]
    unit_bits[dropped] = 0
    plan = BitPlan.from_unit_bits(graph, unit_bits, {})
    assert plan.channels == Plan.from_keep(graph, unit_bits > 0)
    assert not plan.channels.keep_mask(graph)[dropped].any()


@pytest.mark.parametrize("body, match", [
    ({"format": "graphprune.bitplan/1", "channels": {"format": 1, "kept": {}}, "weight_bits": {"fc": 3}},
     r"'fc'\] = 3"),
    ({"format": "graphprune.bitplan/1", "channels": {"format": 1, "kept": {}}, "weight_bits": {"fc": True}},
     r"'fc'\] = True"),
    ({"format": "graphprune.bitplan/9", "channels": {}}, "format"),
    ({"format": "graphprune.bitplan/1", "channels": {"format": 1, "kept": {}}, "extra": 1}, "unknown keys"),
    ({"format": "graphprune.bitplan/1", "channels": {"format": 1, "kept": {"g": [True]}}}, "unit ids"),
])
def test_bad_plans_name_the_problem(body, match):
    with pytest.raises(PlanError, match=match):
        BitPlan.from_json(json.dumps(body))

"""Views of the dependency graph: summary text, networkx, DOT."""
import torch

import graphprune
from graphprune.testing import PATTERNS


def _graph():
    p = [p for p in PATTERNS if p.name == "inception_concat"][0]
    return graphprune.inspect(p.build().eval(), p.make_input())


def test_summary_lists_groups_shares_and_frozen_reasons():
    g = _graph()
    text = g.summary()
    for grp in g.groups:
        assert grp.name in text
    assert "model output" in text
    shares = g.group_macs_share()
    assert all(0 < s <= 1 for s in shares.values())


def test_networkx_view():
    g = _graph()
    nxg = g.to_networkx()
    groups = [n for n, d in nxg.nodes(data=True) if d["kind"] == "group"]
    assert len(groups) == len(g.groups)
    assert nxg.has_edge("b1.0.weight:0", "after.0.weight[1]")


def test_dot_view():
    dot = _graph().to_dot()
    assert dot.startswith("graph dependency {") and dot.rstrip().endswith("}")
    assert '"b1.0.weight:0" -- ' in dot


def test_repr_and_cost():
    g = _graph()
    assert "groups" in repr(g)
    c = g.cost()
    assert c.params == sum(p.numel() for p in g.traced.gm.parameters())

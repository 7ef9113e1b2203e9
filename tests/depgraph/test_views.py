"""Views of the dependency graph: summary text, networkx, DOT."""
import pytest
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


# ---- layers per group, notes, HTML ---------------------------------------------------------------------
import re  # noqa: E402
from html.parser import HTMLParser  # noqa: E402

import torch.nn as nn  # noqa: E402

from graphprune.depgraph.html_view import render_html  # noqa: E402
from graphprune.depgraph.views import layer_refs, summary  # noqa: E402


class _Net(nn.Module):
    """conv -> bn -> depthwise conv -> bn -> conv -> pool -> linear; the output is frozen."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)
        self.dw, self.dw_bn = nn.Conv2d(8, 8, 3, groups=8), nn.BatchNorm2d(8)
        self.pw, self.fc = nn.Conv2d(8, 6, 1), nn.Linear(6, 4)

    def forward(self, x):
        x = self.dw_bn(self.dw(self.bn(self.stem(x)).relu())).relu()
        return self.fc(self.pw(x).mean((2, 3)))


def _net_graph():
    return graphprune.inspect(_Net().eval(), torch.randn(1, 3, 12, 12))


def test_group_layers_are_modules_in_graph_order_producer_first():
    g = _net_graph()
    layers = {grp.name: [str(r) for r in layer_refs(g, grp.members, first=grp.anchor)] for grp in g.groups}
    assert layers == {"stem.weight:0": ["stem(out)", "bn", "dw(in=out)", "dw_bn", "pw(in)"],
                      "pw.weight:0": ["pw(out)", "fc(in)"]}
    frozen = [str(r) for f in g.frozen for r in layer_refs(g, f.dims)]
    assert frozen == ["fc(out)"]


def test_summary_shows_layers_and_explains_names_and_overlapping_macs():
    g = _net_graph()
    text = summary(g)
    assert "stem(out) bn dw(in=out) dw_bn pw(in)" in text and "running_mean" not in text
    assert "named <parameter>:<axis>" in text and "sums past 100 %" in text
    stated = float(re.search(r"\(here (\d+) %\)", text).group(1))
    assert stated == pytest.approx(100 * sum(g.group_macs_share().values()), abs=0.5)
    assert stated > 100  # a layer counts in its input and output groups: the shares overlap
    assert "fc(out): model output" in text


def test_summary_with_a_plan_shows_kept_channels():
    result = graphprune.prune(_Net().eval(), 0.5, torch.randn(1, 3, 12, 12), strategy="uniform",
                              return_result=True)
    text = summary(result.graph, plan=result.plan)
    for name, kept in result.plan.kept.items():
        n = result.graph.group(name).n_units
        assert re.search(rf"^{re.escape(name)} .* {len(kept)}/{n} ", text, re.M)


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text, self.tags, self.bars = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "rect" and attrs.get("class") == "bar":
            self.bars.append(float(attrs["width"]))

    def handle_data(self, data):
        self.text.append(data)


def test_html_page_is_self_contained_and_names_groups_and_frozen_reasons():
    g = _graph()  # inception_concat: several groups and frozen sets
    page = render_html(g, title="inception")
    assert "http" not in page and "<script" not in page and "<link" not in page
    parser = _Page()
    parser.feed(page)
    text = " ".join(parser.text)
    assert "svg" in parser.tags and "title" in parser.tags
    for grp in g.groups:
        assert grp.name in text
    assert g.frozen
    for f in g.frozen:
        assert f.reason in text
    assert parser.bars == []  # no plan, no kept bars


def test_html_page_with_a_plan_draws_the_kept_fraction_per_group():
    result = graphprune.prune(_Net().eval(), 0.5, torch.randn(1, 3, 12, 12), strategy="uniform",
                              return_result=True)
    parser = _Page()
    parser.feed(render_html(result.graph, result.plan))
    full = 104 - 8  # NODE_W minus padding: the bar of a group kept whole
    want = [full * len(result.plan.kept.get(grp.name, range(grp.n_units))) / grp.n_units
            for grp in result.graph.groups]
    assert parser.bars == pytest.approx(want, abs=0.06)
    assert any(w < full for w in parser.bars)

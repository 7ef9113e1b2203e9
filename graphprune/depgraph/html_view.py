"""One self-contained HTML page of a dependency graph: inline SVG + CSS, no script, no external reference.

Layout (computed here, so the page needs neither Graphviz nor a network):

* the **layers** (modules) that any group or frozen set touches form one row, left to right in graph order;
* every **group** is a coloured node in a lane above that row, placed over its producing layer, with a
  horizontal bus across the layers it spans and a tick down to each of its layers;
* every **frozen set** is a grey node in a lane below the row, wired the same way; its reason is printed
  and, with the group details, shown on hover (SVG ``<title>``);
* with a plan, each group node carries a bar: the fraction of its channels the plan keeps.

Lanes are assigned greedily (interval scheduling by span), so nodes whose spans overlap never share a lane.
A table under the drawing lists the same groups and frozen sets as text.

    >>> from graphprune.depgraph.html_view import render_html
    >>> page = render_html(graphprune.inspect(model, x), plan=result.plan, title="resnet20")
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from .views import GROUP_NAME_NOTE, MACS_NOTE, LayerRef, kept_counts, layer_refs, module_order

if TYPE_CHECKING:  # pragma: no cover
    from ..plan import Plan
    from .graph import DependencyGraph

__all__ = ["render_html", "Item"]

PITCH, LAYER_W, LAYER_H = 112, 104, 22  # column pitch and layer box size (px)
NODE_W, NODE_H, LANE_H = 104, 30, 40  # group/frozen node size and lane height
MARGIN, LABEL_CHARS = 16, 16

_CSS = """body{font:13px system-ui,sans-serif;margin:16px;color:#222}
.wrap{overflow:auto;border:1px solid #ccc;background:#fcfcfc}
svg text{font:10px ui-monospace,monospace} .layer rect{fill:#fff;stroke:#555}
.frozen rect.node{fill:#ddd;stroke:#888} .frozen line{stroke:#999;stroke-dasharray:3 2}
g.item:hover line{stroke-width:3} table{border-collapse:collapse;margin-top:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top} .note{color:#555}
.bar{fill:#2a7} .barbg{fill:#fff;stroke:#999}"""


@dataclass
class Item:
    """A group or frozen set as drawn: its layers' columns, lane, colour and hover text."""

    kind: str  # "group" or "frozen"
    name: str
    label: str
    columns: list[int]
    layers: str  # the layers as text: "conv1(out) bn1 layer1.0.conv1(in)"
    hover: str
    hue: float = 0.0
    kept: float | None = None  # kept fraction (groups, with a plan)
    lane: int = 0


def _items(g: "DependencyGraph", plan: "Plan | None") -> tuple[list[LayerRef], list[Item]]:
    """The layer row (graph order) and one Item per group and per frozen set."""
    order = module_order(g)
    share, kept = g.group_macs_share(), kept_counts(g, plan)
    per_item = [("group", grp, layer_refs(g, grp.members, order, first=grp.anchor)) for grp in g.groups]
    per_item += [("frozen", f, layer_refs(g, f.dims, order)) for f in g.frozen]
    layers = sorted({r.module: r for _, _, refs in per_item for r in refs}.values(), key=lambda r: (r.order, r.module))
    column = {r.module: i for i, r in enumerate(layers)}
    items = []
    for i, (kind, obj, refs) in enumerate(per_item):
        listed = " ".join(str(r) for r in refs) or "(no layer: activations only)"
        cols = [column[r.module] for r in refs] or [0]
        if kind == "group":
            frac = kept[obj.name] / obj.n_units
            hover = (f"group {obj.name}: {obj.n_units} channels, {100 * share[obj.name]:.1f} % of MACs touched"
                     + (f", plan keeps {kept[obj.name]}/{obj.n_units}" if plan is not None else "")
                     + ("" if obj.exact else f"; inexact: {'; '.join(obj.inexact_reasons)}") + f"\nlayers: {listed}")
            items.append(Item(kind, obj.name, f"{refs[0].module if refs else obj.name} ·{obj.n_units}", cols, listed, hover,
                              hue=(i * 137.508) % 360, kept=frac if plan is not None else None))
        else:
            items.append(Item(kind, f"frozen#{i - len(g.groups)}", obj.reason, cols, listed,
                              f"frozen (kept whole): {obj.reason}\nlayers: {listed}"))
    return layers, items


def _assign_lanes(items: list[Item]) -> int:
    """Give each item the first lane free over its column span; return the number of lanes used."""
    ends: list[int] = []
    for item in sorted(items, key=lambda it: (min(it.columns), -max(it.columns))):
        lo, hi = min(item.columns), max(item.columns)
        lane = next((k for k, end in enumerate(ends) if end < lo), len(ends))
        if lane == len(ends):
            ends.append(hi)
        ends[lane] = hi
        item.lane = lane
    return len(ends)


def _x(col: int) -> float:
    return MARGIN + col * PITCH + PITCH / 2


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[:LABEL_CHARS - 1] + "…"


def _wires(item: Item, node_y: float, row_top: float, row_bottom: float) -> str:
    """The item's bus across its span and a tick to each of its layers (drawn under every node)."""
    above = item.kind == "group"
    stroke = f"hsl({item.hue:.0f},60%,40%)" if above else "#999"
    bus_y, end = node_y + NODE_H / 2, row_top if above else row_bottom
    offset = (item.lane % 7 - 3) * 5  # NOTE: ticks of different lanes into one layer stay apart
    lo, hi = _x(min(item.columns)) + offset, _x(max(item.columns)) + offset
    out = [f'<g class="item {item.kind}"><title>{escape(item.hover)}</title>']
    if hi != lo:
        out.append(f'<line x1="{lo}" y1="{bus_y}" x2="{hi}" y2="{bus_y}" stroke="{stroke}" stroke-width="1.5"/>')
    for col in sorted(set(item.columns)):
        x = _x(col) + offset
        out.append(f'<line x1="{x}" y1="{bus_y}" x2="{x}" y2="{end}" stroke="{stroke}" stroke-width="1.5"/>')
    return "".join(out) + "</g>"


def _node(item: Item, node_y: float) -> str:
    """The item's box over its producing layer: label, and with a plan the kept-fraction bar."""
    above = item.kind == "group"
    stroke = f"hsl({item.hue:.0f},60%,40%)" if above else "#888"
    fill = f"hsl({item.hue:.0f},70%,88%)" if above else "#ddd"
    left = _x(item.columns[0]) - NODE_W / 2
    out = [f'<g class="item {item.kind}"><title>{escape(item.hover)}</title>',
           f'<rect class="node" x="{left}" y="{node_y}" width="{NODE_W}" height="{NODE_H}" rx="5" fill="{fill}" '
           f'stroke="{stroke}"/><text x="{left + 4}" y="{node_y + 12}">{escape(_short(item.label))}</text>']
    if item.kept is not None:
        bar_w = NODE_W - 8
        out.append(f'<rect class="barbg" x="{left + 4}" y="{node_y + 17}" width="{bar_w}" height="8"/>'
                   f'<rect class="bar" x="{left + 4}" y="{node_y + 17}" width="{bar_w * item.kept:.1f}" height="8"/>')
    return "".join(out) + "</g>"


def _svg(layers: list[LayerRef], items: list[Item]) -> str:
    groups = [it for it in items if it.kind == "group"]
    frozen = [it for it in items if it.kind == "frozen"]
    up, down = _assign_lanes(groups), _assign_lanes(frozen)
    row_top = MARGIN + up * LANE_H + 10
    row_bottom = row_top + LAYER_H
    width = 2 * MARGIN + max(len(layers), 1) * PITCH
    height = row_bottom + 10 + down * LANE_H + MARGIN
    # lane 0 of the groups sits just above the layer row, lane 0 of the frozen sets just below it
    node_y = {id(it): row_top - 10 - NODE_H - it.lane * LANE_H for it in groups}
    node_y.update({id(it): row_bottom + 10 + it.lane * LANE_H for it in frozen})
    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    out += [_wires(it, node_y[id(it)], row_top, row_bottom) for it in items]
    out += [_node(it, node_y[id(it)]) for it in items]
    for i, ref in enumerate(layers):
        out.append(f'<g class="layer"><title>{escape(ref.module)}</title><rect x="{_x(i) - LAYER_W / 2}" '
                   f'y="{row_top}" width="{LAYER_W}" height="{LAYER_H}" rx="3"/><text x="{_x(i) - LAYER_W / 2 + 4}" '
                   f'y="{row_top + 15}">{escape(_short(ref.module))}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def _tables(g: "DependencyGraph", items: list[Item], plan: "Plan | None") -> str:
    share, kept = g.group_macs_share(), kept_counts(g, plan)
    head = "<tr><th>group</th><th>channels</th><th>MACs %</th>" + ("<th>kept</th>" if plan else "") + \
           "<th>layers (graph order, producer first)</th></tr>"
    rows = []
    for grp, it in zip(g.groups, items):
        kept_cell = f"<td>{kept[grp.name]}/{grp.n_units}</td>" if plan else ""
        rows.append(f"<tr><td>{escape(grp.name)}</td><td>{grp.n_units}</td><td>{100 * share[grp.name]:.1f}</td>"
                    f"{kept_cell}<td>{escape(it.layers)}</td></tr>")
    frozen = [f"<tr><td>{escape(it.layers)}</td><td>{escape(it.label)}</td></tr>"
              for it in items[len(g.groups):]]
    out = [f"<h2>Groups ({len(g.groups)})</h2><table>{head}{''.join(rows)}</table>"]
    if frozen:
        out.append(f"<h2>Frozen sets ({len(frozen)}), kept whole</h2><table><tr><th>layers</th><th>reason</th></tr>"
                   f"{''.join(frozen)}</table>")
    return "\n".join(out)


def render_html(g: "DependencyGraph", plan: "Plan | None" = None, title: str | None = None) -> str:
    """The page for ``g`` (with ``plan``: the kept fraction of every group), as one HTML string."""
    layers, items = _items(g, plan)
    c = g.cost()
    name = title or type(g.traced.gm).__name__
    plan_line = ""
    if plan is not None:
        info = plan.info
        plan_line = (f"<p>plan: budget {info.get('budget', '?')} of {info.get('metric', 'macs')}, strategy "
                     f"{escape(str(info.get('strategy', '?')))}, achieved {info.get('achieved', float('nan')):.3f}; "
                     "the green bar in each group is the fraction of its channels kept.</p>")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>graphprune: {escape(name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(name)}</h1>",
        f"<p>{c.macs / 1e6:.2f} MMACs, {c.params / 1e6:.3f} M params, {len(g.groups)} prunable groups "
        f"({g.n_units} channels), {len(g.frozen)} frozen sets.</p>", plan_line,
        f'<p class="note">Layers left to right in graph order; coloured nodes above are groups ({escape(GROUP_NAME_NOTE)}), '
        "wired to every layer whose channels move with them; grey nodes below are frozen sets (kept whole), "
        "with the reason. Hover for details.</p>",
        f'<div class="wrap">{_svg(layers, items)}</div>',
        _tables(g, items, plan),
        f'<p class="note">{escape(MACS_NOTE)}.</p>', "</body></html>"])

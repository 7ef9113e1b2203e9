"""Views of a dependency graph for people: a text summary, a networkx graph and Graphviz DOT."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .graph import DependencyGraph

__all__ = ["summary", "to_networkx", "to_dot"]


def _layers(members) -> list[str]:
    """Parameter names (without the leading '@') among a group's member dims."""
    return sorted({f"{d.value[1:]}[{d.axis}]" for d in members if d.value.startswith("@")})


def summary(g: "DependencyGraph", max_groups: int = 60) -> str:
    c = g.cost()
    share = g.group_macs_share()
    lines = [f"{type(g.traced.gm).__name__}: {c.macs / 1e6:.2f} MMACs, {c.params / 1e6:.3f} M params, "
             f"{len(g.groups)} prunable groups, {g.n_units} prunable channels, {len(g.frozen)} frozen sets"]
    if g.unmodeled_macs:
        lines.append(f"{g.unmodeled_macs / 1e6:.2f} MMACs are in ops without a channel rule (kept whole)")
    lines.append(f"{'group':<44} {'units':>6} {'MACs%':>6} {'exact':>5}  layers")
    for grp in g.groups[:max_groups]:
        layers = _layers(grp.members)
        shown = ", ".join(layers[:4]) + (f", +{len(layers) - 4} more" if len(layers) > 4 else "")
        lines.append(f"{grp.name:<44} {grp.n_units:>6} {100 * share[grp.name]:>6.1f} "
                     f"{'yes' if grp.exact else 'no':>5}  {shown}")
    if len(g.groups) > max_groups:
        lines.append(f"... {len(g.groups) - max_groups} more groups")
    if g.frozen:
        lines.append("frozen (kept whole):")
        for f in g.frozen[:max_groups]:
            layers = _layers(f.dims) or sorted({str(d) for d in f.dims})[:3]
            lines.append(f"  {', '.join(layers[:3])}{' ...' if len(layers) > 3 else ''}: {f.reason}")
    return "\n".join(lines)


def to_networkx(g: "DependencyGraph"):
    """Bipartite view: one node per group / frozen set, one per parameter; edges = membership."""
    import networkx as nx

    graph = nx.Graph()
    for grp in g.groups:
        graph.add_node(grp.name, kind="group", units=grp.n_units, exact=grp.exact)
        for layer in _layers(grp.members):
            graph.add_node(layer, kind="parameter")
            graph.add_edge(grp.name, layer)
    for i, f in enumerate(g.frozen):
        name = f"frozen#{i}"
        graph.add_node(name, kind="frozen", reason=f.reason)
        for layer in _layers(f.dims):
            graph.add_node(layer, kind="parameter")
            graph.add_edge(name, layer)
    return graph


def to_dot(g: "DependencyGraph") -> str:
    """Graphviz DOT of ``to_networkx``: groups as boxes, frozen sets in grey, parameters as ellipses."""
    nxg = to_networkx(g)
    out = ["graph dependency {", "  rankdir=LR;"]
    for node, data in nxg.nodes(data=True):
        label = node.replace('"', "'")
        if data["kind"] == "group":
            out.append(f'  "{label}" [shape=box, label="{label}\\n{data["units"]} ch"];')
        elif data["kind"] == "frozen":
            reason = data["reason"][:60].replace('"', "'")
            out.append(f'  "{label}" [shape=box, style=filled, fillcolor=grey, label="{label}\\n{reason}"];')
        else:
            out.append(f'  "{label}" [shape=ellipse];')
    for a, b in nxg.edges():
        out.append(f'  "{a}" -- "{b}";')
    out.append("}")
    return "\n".join(out)

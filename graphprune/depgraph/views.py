"""Views of a dependency graph for people: a text summary, a networkx graph and Graphviz DOT.

The summary speaks in **layers** (modules), not parameter tensors: a group is shown as the layers whose
channels move together, in graph order, producer first, each with the side that moves::

    conv1.weight:0   64  ...  conv1(out) bn1 layer1.0.conv1(in) layer1.0.bn2 ...

``conv1(out)``: conv1's output channels; ``layer1.0.conv1(in)``: its input channels; a bare name (a norm
layer): all of its per-channel parameters and statistics; ``(in=out)``: a depthwise conv, whose input and
output channels are the same set.  (``html_view.py`` draws the same view as a page.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import torch.nn as nn

if TYPE_CHECKING:  # pragma: no cover
    from .rule_context import Dim

# NOTE: "DependencyGraph" (graph.py) and "Plan" (graphprune.plan) are named in annotations only, not imported,
# even for type checking: graph.py's summary/to_dot methods call into this module, so it sits below both
# (tests/test_imports.py refuses the cycle an import would make).

__all__ = ["summary", "to_networkx", "to_dot", "LayerRef", "layer_refs", "module_order", "kept_counts",
           "GROUP_NAME_NOTE", "MACS_NOTE"]

GROUP_NAME_NOTE = ("a group = channels that must be pruned together, named <parameter>:<axis> after the layer "
                   "that produces them (conv1.weight:0 = axis 0 of conv1.weight, i.e. conv1's output channels)")
MACS_NOTE = ("MACs% = share of the model's MACs in layers whose cost depends on the group; a layer counts in "
             "its input group and its output group, so the column sums past 100 %")


@dataclass(frozen=True)
class LayerRef:
    """One layer (module) in a group, and which of its channel sides move with the group."""

    module: str
    role: str  # "out", "in", "in=out", "in,out" or "" (all of its per-channel tensors)
    order: int  # position of the layer's first use in the fx graph

    def __str__(self) -> str:
        return f"{self.module}({self.role})" if self.role else self.module


def module_order(g: "DependencyGraph") -> dict[str, int]:
    """Qualified module name -> index of the first fx node that calls it (or reads one of its tensors)."""
    order: dict[str, int] = {}
    for i, node in enumerate(g.traced.gm.graph.nodes):
        if node.op == "call_module":
            order.setdefault(str(node.target), i)
        elif node.op == "get_attr":
            order.setdefault(str(node.target).rpartition(".")[0], i)
    return order


def _role(module: nn.Module | None, attr: str, axis: int) -> str:
    """Which channel side of ``module`` axis ``axis`` of its tensor ``attr`` is ("" when not conv/linear)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        if attr != "weight":
            return "out"
        if module.groups > 1 and module.groups == module.in_channels == module.out_channels:
            return "in=out"  # NOTE: depthwise: one weight axis holds input and output channels
        out_axis = 1 if module.transposed else 0
        return "out" if axis == out_axis else "in"
    if isinstance(module, nn.Linear):
        return "out" if attr != "weight" or axis == 0 else "in"
    return ""


def _join_roles(roles: set[str]) -> str:
    """One label for the sides of a layer in a group ("in=out" covers a depthwise conv's bias too)."""
    roles = {"in=out"} if "in=out" in roles else roles - {""}
    return ",".join(sorted(roles))


def layer_refs(g: "DependencyGraph", dims: Iterable["Dim"], order: dict[str, int] | None = None,
               first: "Dim | None" = None) -> list[LayerRef]:
    """The layers owning the parameter/buffer dims in ``dims``, in graph order (``first``'s layer first)."""
    order = module_order(g) if order is None else order
    modules = dict(g.traced.gm.named_modules())
    roles: dict[str, set[str]] = {}
    for d in dims:
        if not d.value.startswith("@"):
            continue
        owner, _, attr = d.value[1:].rpartition(".")
        if owner in modules and owner:
            roles.setdefault(owner, set()).add(_role(modules[owner], attr, d.axis))
        else:  # a tensor of the root module (functional models): name the tensor itself
            roles.setdefault(f"{d.value[1:]}[{d.axis}]", set()).add("")
    lead = first.value[1:].rpartition(".")[0] if first is not None else None
    refs = [LayerRef(m, _join_roles(r), order.get(m, len(order))) for m, r in roles.items()]
    return sorted(refs, key=lambda ref: (ref.module != lead, ref.order, ref.module))


def kept_counts(g: "DependencyGraph", plan: "Plan | None") -> dict[str, int]:
    """Group name -> units the plan keeps (all of them where the plan does not name the group)."""
    kept = plan.kept if plan is not None else {}
    return {grp.name: len(kept[grp.name]) if grp.name in kept else grp.n_units for grp in g.groups}


def _shown(refs: list, limit: int) -> str:
    text = " ".join(str(r) for r in refs[:limit])
    return text + (f" +{len(refs) - limit} more" if len(refs) > limit else "")


def summary(g: "DependencyGraph", max_groups: int = 60, plan: "Plan | None" = None) -> str:
    """A table of the groups (units, MACs share, exactness, [kept], layers) and the frozen sets with reasons."""
    c, share, order = g.cost(), g.group_macs_share(), module_order(g)
    kept = kept_counts(g, plan) if plan is not None else None
    lines = [f"{type(g.traced.gm).__name__}: {c.macs / 1e6:.2f} MMACs, {c.params / 1e6:.3f} M params, "
             f"{len(g.groups)} prunable groups, {g.n_units} prunable channels, {len(g.frozen)} frozen sets"]
    if g.unmodeled_macs:
        lines.append(f"{g.unmodeled_macs / 1e6:.2f} MMACs are in ops without a channel rule (kept whole)")
    lines += [f"note: {GROUP_NAME_NOTE}.",
              f"note: {MACS_NOTE} (here {100 * sum(share.values()):.0f} %).",
              "note: layers in graph order, producer first; (out)/(in) = the layer's output/input channels, "
              "a bare name = all of its per-channel tensors (e.g. BatchNorm)."]
    width = max([len(grp.name) for grp in g.groups[:max_groups]] + [5])
    kept_head = f" {'kept':>9}" if kept is not None else ""
    lines.append(f"{'group':<{width}} {'units':>6} {'MACs%':>6} {'exact':>5}{kept_head}  layers")
    for grp in g.groups[:max_groups]:
        refs = layer_refs(g, grp.members, order, first=grp.anchor)
        kept_cell = f" {f'{kept[grp.name]}/{grp.n_units}':>9}" if kept is not None else ""
        lines.append(f"{grp.name:<{width}} {grp.n_units:>6} {100 * share[grp.name]:>6.1f} "
                     f"{'yes' if grp.exact else 'no':>5}{kept_cell}  {_shown(refs, 8)}")
    if len(g.groups) > max_groups:
        lines.append(f"... {len(g.groups) - max_groups} more groups")
    if g.frozen:
        lines.append("frozen (kept whole):")
        for f in g.frozen[:max_groups]:
            refs = layer_refs(g, f.dims, order) or sorted({str(d) for d in f.dims})
            lines.append(f"  {_shown(refs, 4)}: {f.reason}")
        if len(g.frozen) > max_groups:
            lines.append(f"  ... {len(g.frozen) - max_groups} more frozen sets")
    return "\n".join(lines)


def _parameters(members) -> list[str]:
    """Parameter/buffer dims (without the leading '@') among ``members``, as ``name[axis]``."""
    return sorted({f"{d.value[1:]}[{d.axis}]" for d in members if d.value.startswith("@")})


def to_networkx(g: "DependencyGraph"):
    """Bipartite view: one node per group / frozen set, one per parameter dim; edges = membership.

    Group and frozen nodes also carry ``layers``: their layers as in the summary (``conv1(out)``, ...).
    """
    import networkx as nx

    graph, order = nx.Graph(), module_order(g)
    for grp in g.groups:
        layers = [str(r) for r in layer_refs(g, grp.members, order, first=grp.anchor)]
        graph.add_node(grp.name, kind="group", units=grp.n_units, exact=grp.exact, layers=layers)
        for param in _parameters(grp.members):
            graph.add_node(param, kind="parameter")
            graph.add_edge(grp.name, param)
    for i, f in enumerate(g.frozen):
        name = f"frozen#{i}"
        graph.add_node(name, kind="frozen", reason=f.reason, layers=[str(r) for r in layer_refs(g, f.dims, order)])
        for param in _parameters(f.dims):
            graph.add_node(param, kind="parameter")
            graph.add_edge(name, param)
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

"""Stage 2 — dependency graph: walk the traced graph once, let each op's rule couple channels.

Reads: a ``TracedModel`` (fx graph with shapes).  Writes nothing into the graph; returns a
``DependencyGraph``.

How it works:

1. Every tensor value (node outputs, tuple items, parameters, buffers) contributes one *dim* per axis.
2. Each node's rule (looked up in ``rules.REGISTRY``) declares couplings between dims.  Identity couplings
   merge whole dims in a union-find ("dim classes"); index maps (concat, flatten, grouped conv) become
   element-level edges between classes.
3. Dims a rule does not mention are frozen: model inputs and outputs, spatial axes of a conv, every axis
   of an op nobody wrote a rule for.  Frozen means "keep every element", and the reason is kept.
4. Where a rule had a choice (which axis of a reshape carries the channels), a dim that ended frozen
   causes one more pass with the next option for that node (at most ``MAX_PASSES``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch.fx as fx

from ..trace import TracedModel
from .conv_groups import GroupedConv, check_grouped
from .heads import HeadSplit, auto_units, check_attention, has_attention
from .rule_context import Dim, RuleContext
from .graph import DependencyGraph
from .grouping import assemble_graph
from .rules import lookup_rule, op_label

__all__ = ["build_dependency_graph"]

MAX_PASSES = 4


@dataclass
class _Choice:
    options: list[Dim]
    chosen: int


@dataclass
class _Builder:
    traced: TracedModel
    choices: dict[str, int]
    forced_frozen: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    parent: dict[Dim, Dim] = field(default_factory=dict)
    root_frozen: set[Dim] = field(default_factory=set)
    order: dict[Dim, int] = field(default_factory=dict)
    reasons: dict[Dim, str] = field(default_factory=dict)
    links: list[tuple[Dim, np.ndarray, Dim, np.ndarray]] = field(default_factory=list)
    element_freezes: list[tuple[Dim, np.ndarray, str]] = field(default_factory=list)
    sources: set[Dim] = field(default_factory=set)
    inexact: dict[Dim, str] = field(default_factory=dict)
    mac_terms: list[tuple[str, float, list[Dim]]] = field(default_factory=list)
    made: dict[str, _Choice] = field(default_factory=dict)
    attr_values: dict[str, str] = field(default_factory=dict)  # get_attr node -> its "@parameter" value
    attention: str = "head_dim"  # what a unit of a head split is ("heads" or "head_dim", see heads.py)
    head_splits: dict[str, HeadSplit] = field(default_factory=dict)
    grouped: str = "group_width"  # what a unit of a grouped conv is (conv_groups.py; "auto": per conv)
    grouped_convs: dict[str, GroupedConv] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.gm = self.traced.gm
        self.modules = dict(self.gm.named_modules())
        self.shapes = dict(self.traced.shapes)
        self.param_alias: dict[str, str] = {}
        seen: dict[int, str] = {}
        named = list(self.gm.named_parameters(remove_duplicate=False)) + \
            list(self.gm.named_buffers(remove_duplicate=False))
        for name, tensor in named:
            key = f"@{name}"
            self.shapes[key] = tuple(tensor.shape)
            first = seen.setdefault(id(tensor), key)
            self.param_alias[key] = first
        for key, first in self.param_alias.items():
            if key != first:  # tied weights: one tensor, many names
                for axis in range(len(self.shapes[key])):
                    self.union(Dim(key, axis), Dim(first, axis))
        self.from_parameters_only = _parameter_only_nodes(self.gm.graph)

    # ---- union-find over dims ------------------------------------------------------------
    def _register(self, d: Dim) -> None:
        if d not in self.parent:
            self.parent[d] = d
            self.order[d] = len(self.order)

    def find(self, d: Dim) -> Dim:
        self._register(d)
        root = d
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[d] != root:
            self.parent[d], d = root, self.parent[d]
        return root

    def union(self, a: Dim, b: Dim) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.order[rb] < self.order[ra]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        if rb in self.root_frozen:
            self.root_frozen.add(ra)

    def is_frozen(self, d: Dim) -> bool:
        return self.find(d) in self.root_frozen

    def freeze(self, d: Dim, reason: str, elements: np.ndarray | None = None) -> None:
        self._register(d)
        self.reasons.setdefault(d, reason)
        if elements is None:
            self.root_frozen.add(self.find(d))
        else:
            self.element_freezes.append((d, np.asarray(elements, dtype=np.int64), reason))

    def add_links(self, a: Dim, ia: np.ndarray, b: Dim, ib: np.ndarray) -> None:
        self._register(a)
        self._register(b)
        self.links.append((a, ia, b, ib))

    def add_macs(self, node: str, coef: float, dims: list[Dim]) -> None:
        for d in dims:
            self._register(d)
        self.mac_terms.append((node, coef, dims))

    def choice_for(self, node_name: str, options: list[Dim]) -> int:
        chosen = min(self.choices.get(node_name, 0), len(options) - 1)
        self.made[node_name] = _Choice(options, chosen)
        return chosen

    def op_label(self, node: fx.Node) -> str:
        return op_label(node, self.modules)

    # ---- walking the graph ---------------------------------------------------------------
    def values_of(self, node: fx.Node) -> list[str]:
        if node.name in self.shapes:
            return [node.name]
        return sorted((k for k in self.shapes if k.startswith(node.name + "#")),
                      key=lambda k: int(k.split("#")[1]))

    def _module_params(self, target: str) -> list[str]:
        module = self.modules[target]
        names = [n for n, _ in module.named_parameters(remove_duplicate=False)]
        names += [n for n, _ in module.named_buffers(remove_duplicate=False)]
        return [f"@{target}.{n}" for n in names if f"@{target}.{n}" in self.shapes]

    def involved(self, node: fx.Node) -> list[str]:
        values = list(self.values_of(node))
        for inp in node.all_input_nodes:
            values += self.values_of(inp)
        if node.op == "call_module":
            values += self._module_params(node.target)
        return values

    def _freeze_all(self, values: list[str], reason: str) -> None:
        for v in values:
            for axis in range(len(self.shapes[v])):
                self.freeze(Dim(v, axis), reason)

    def visit(self, node: fx.Node) -> None:
        label = self.op_label(node)
        if node.op == "placeholder":
            self._freeze_all(self.values_of(node), f"model input '{node.name}'")
            return
        if node.op == "output":
            inputs = [v for n in node.all_input_nodes for v in self.values_of(n)]
            self._freeze_all(inputs, "model output")
            return
        if node.op == "get_attr":
            self._visit_get_attr(node)
            return
        involved = self.involved(node)
        if not involved:
            return  # pure Python arithmetic on sizes
        if node.name in self.forced_frozen:
            self._freeze_all(involved, f"{node.name} ({label}): {self.forced_frozen[node.name]}")
            return
        rule = lookup_rule(node, self.modules)
        if rule is None:
            self._freeze_all(involved, f"{node.name} ({label}): no channel rule for this op; "
                                       f"its tensors keep all channels{self._computed_weight_hint(node)}")
            return
        ctx = RuleContext(self, node)
        rule.couple(ctx)
        skipped = ctx.skip
        for v in involved:
            if v in skipped:
                continue
            for axis in range(len(self.shapes[v])):
                d = Dim(v, axis)
                if d not in ctx.touched:
                    self.freeze(d, f"{node.name} ({label}): does not support pruning axis {axis} of {v}"
                                   f"{self._computed_weight_hint(node)}")

    def _computed_weight_hint(self, node: fx.Node) -> str:
        """What to do when the frozen op computes a weight from parameters alone in ``forward``."""
        if node.name not in self.from_parameters_only:
            return ""
        return (" (computed from parameters alone, e.g. weight standardisation in forward; to prune through it, "
                "register it with torch.nn.utils.parametrize: graphprune bakes parametrized weights into plain ones)")

    def _visit_get_attr(self, node: fx.Node) -> None:
        if node.name not in self.shapes:
            return
        key = f"@{node.target}"
        if key in self.shapes and self.shapes[key] == self.shapes[node.name]:
            self.attr_values[node.name] = key
            for axis in range(len(self.shapes[key])):
                self.union(Dim(node.name, axis), Dim(key, axis))
        else:
            self._freeze_all([node.name], f"constant tensor '{node.target}' is not a parameter or buffer")

    def run(self) -> None:
        for node in self.gm.graph.nodes:
            self.visit(node)


def _parameter_only_nodes(graph: fx.Graph) -> set[str]:
    """Names of the ops whose every input comes from parameters, buffers or constants (no model input upstream)."""
    from_input: set[str] = set()
    only: set[str] = set()
    for node in graph.nodes:
        if node.op == "placeholder" or any(i.name in from_input for i in node.all_input_nodes):
            from_input.add(node.name)
        elif node.op in ("call_function", "call_method", "call_module") and node.all_input_nodes:
            only.add(node.name)
    return only


def _retry_choices(builder: _Builder, graph: DependencyGraph) -> dict[str, int] | None:
    """Next choices to try where a rule's chosen axis ended up frozen, or None when nothing changes."""
    changed = dict(builder.choices)
    for node_name, choice in builder.made.items():
        if choice.chosen + 1 < len(choice.options) and graph.dim_fully_frozen(choice.options[choice.chosen]):
            changed[node_name] = choice.chosen + 1
    return changed if changed != builder.choices else None


def _attention_units(traced: TracedModel, attention: str | None, forced_frozen: dict[str, str] | None) -> str:
    """``"heads"`` or ``"head_dim"``: ``attention`` (default ``traced.attention``) with ``"auto"`` resolved by one
    probing pass that counts the heads of every head split (``heads.auto_units``); ``"both"`` starts with heads."""
    attention = check_attention(attention or getattr(traced, "attention", "auto"))
    if attention == "auto" and not has_attention(traced.gm):
        return "head_dim"  # no attention: nothing to decide
    if attention == "auto":
        probe = _Builder(traced, {}, dict(forced_frozen or {}), attention="heads")
        probe.run()
        return auto_units(list(probe.head_splits.values()))
    return "heads" if attention == "both" else attention


def build_dependency_graph(traced: TracedModel, forced_frozen: dict[str, str] | None = None,
                           attention: str | None = None, grouped: str | None = None) -> DependencyGraph:
    """Build the channel dependency graph of a traced model (see module docstring).

    ``forced_frozen`` maps node names to a reason: every tensor those nodes touch is frozen.  ``prune``
    uses it to fence off a node whose pruned form failed verification, then tries again.  ``attention``
    (default: ``traced.attention``, else ``"auto"``) says what a unit of multi-head attention is
    (``depgraph/heads.py``); the graph records it and every head split (``graph.head_splits``).  ``grouped``
    (default: ``traced.grouped``, else ``"auto"``) says what a unit of a grouped conv is
    (``depgraph/conv_groups.py``); the graph records it and every grouped conv (``graph.grouped_convs``).
    """
    units = _attention_units(traced, attention, forced_frozen)
    conv_units = check_grouped(grouped or getattr(traced, "grouped", "auto"))  # "auto": per conv, by its groups
    choices: dict[str, int] = {}
    for _ in range(MAX_PASSES):
        builder = _Builder(traced, choices, {**traced.frozen_nodes, **(forced_frozen or {})}, attention=units,
                           grouped=conv_units)
        builder.run()
        graph = assemble_graph(builder)
        nxt = _retry_choices(builder, graph)
        if nxt is None:
            break
        choices = nxt
    graph.attention, graph.head_splits = units, builder.head_splits
    graph.grouped, graph.grouped_convs = conv_units, builder.grouped_convs
    return graph

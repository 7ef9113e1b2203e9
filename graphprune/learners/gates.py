"""Gates on the dependency graph: one scalar per *unit*, multiplied onto every tensor that reads it.

A unit is a coupled channel set (see :mod:`graphprune.depgraph.graph`), so one gate per unit means that
residual-coupled channels share one gate, and a concat's output channels keep their branches' gates.

Where a gate goes.  Let ``U(v)`` be the units that have an element in value ``v`` (over all its axes).
A node ``N`` *reads* unit ``u`` from an input ``A`` when ``u ∈ U(A)`` but ``u ∉ U(N)``: the channel is
consumed there (a conv or linear mixes it into other channels, a mean over channels reduces it), rather
than carried (BN, ReLU, depthwise conv, residual add, concat, flatten carry it).  Each such (N, A, axis)
is a *site*; the gated graph computes ``N(..., A ⊙ G, ...)`` with ``G[i] = g[u(i)]`` for the elements
``i`` of that axis whose unit is read there, and ``G[i] = 1`` elsewhere.  Hence:

* ``g = 1`` everywhere: every site multiplies by exactly 1.0, so the gated model *equals* the original;
* ``g = keep`` (0/1): every reader sees zeros for dropped units, which is what physically removing the
  channels computes (the masked reference of :mod:`graphprune.passes.masked_reference`), for exact groups;
* soft ``g``: each read of a channel is scaled once (no ``g²`` along conv→BN→ReLU chains).

Inexact cases (as for the masked reference): an op that normalises over a unit's channels while
carrying them (LayerNorm), and a fused op that both reduces a unit and carries it (SDPA reduces the head
dim in q·k and carries it from v) sees the ungated channel, since the gate sits where the unit stops
being carried.

*Structure gates* (GAL) are scalars on whole operands: a concat's branch input, or a residual add's
mapping input (see :mod:`graphprune.passes.remove_branch` / :mod:`.remove_block`).

:func:`materialize` turns a gated model back into a plain ``GraphModule``: gate calls become multiplies
by constant buffers (dropped where the constant is 1), so the standard rewrite pipeline can prune it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from ..depgraph import DependencyGraph, Dim

__all__ = ["GateSite", "Structure", "UnitGates", "StructureGates", "GatedModel", "find_sites",
           "attach_gates", "materialize", "value_units", "UNIT_GATES", "STRUCTURE_GATES"]

UNIT_GATES = "gp_unit_gates"
STRUCTURE_GATES = "gp_structure_gates"


@dataclass(frozen=True)
class GateSite:
    """Node ``node`` reads units of value ``arg`` along ``axis``; ``index[i]`` is element i's unit or -1."""

    node: str
    arg: str
    axis: int
    ndim: int
    index: tuple[int, ...]


@dataclass(frozen=True)
class Structure:
    """A gateable operand: ``kind`` "branch" (``node`` is a concat, ``index`` its tensor-list position)
    or "block" (``node`` is a residual add, ``index`` the argument position of its mapping)."""

    kind: str
    node: str
    index: int


def _values(graph: DependencyGraph, node_name: str) -> list[str]:
    if node_name in graph.shapes:
        return [node_name]
    prefix = node_name + "#"
    return [k for k in graph.shapes if k.startswith(prefix)]


def _axis_units(graph: DependencyGraph, value: str, axis: int) -> np.ndarray | None:
    c = graph.dim_class.get(Dim(value, axis))
    if c is None:
        return None
    lo = graph.class_offset[c]
    return graph.element_unit[lo:lo + graph.class_size[c]]


def value_units(graph: DependencyGraph, value: str) -> set[int]:
    """``U(v)``: the units with at least one element in any axis of ``value``."""
    out: set[int] = set()
    for axis in range(len(graph.shapes[value])):
        units = _axis_units(graph, value, axis)
        if units is not None:
            out.update(int(u) for u in np.unique(units[units >= 0]))
    return out


def find_sites(graph: DependencyGraph) -> list[GateSite]:
    """Every (reader node, input value, axis) where units are consumed (module docstring)."""
    sites = []
    for node in graph.traced.gm.graph.nodes:
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        outs = _values(graph, node.name)
        if not outs:  # size reads and other non-tensor results consume nothing
            continue
        carried = set().union(*(value_units(graph, v) for v in outs))
        for arg in dict.fromkeys(a.name for a in node.all_input_nodes if a.name in graph.shapes):
            for axis in range(len(graph.shapes[arg])):
                units = _axis_units(graph, arg, axis)
                if units is None:
                    continue
                read = (units >= 0) & ~np.isin(units, list(carried))
                if read.any():
                    index = tuple(int(u) for u in np.where(read, units, -1))
                    sites.append(GateSite(node.name, arg, axis, len(graph.shapes[arg]), index))
    return sites


class UnitGates(nn.Module):
    """``values[u]`` is unit u's gate; ``override`` (e.g. sampled by a hyper-network) replaces it."""

    def __init__(self, n_units: int, sites: Sequence[GateSite], gated: np.ndarray | None = None):
        super().__init__()
        self.n_units = n_units
        self.values = nn.Parameter(torch.ones(n_units))
        self.override: torch.Tensor | None = None
        self.shapes: list[tuple[int, ...]] = []
        use = np.ones(n_units, dtype=bool) if gated is None else np.asarray(gated, dtype=bool)
        for k, site in enumerate(sites):
            index = np.asarray(site.index)
            index = np.where((index >= 0) & use[np.maximum(index, 0)], index, n_units)  # n_units: constant 1
            self.register_buffer(f"index_{k}", torch.as_tensor(index, dtype=torch.long), persistent=False)
            shape = [1] * site.ndim
            shape[site.axis] = len(index)
            self.shapes.append(tuple(shape))

    def vector(self) -> torch.Tensor:
        v = self.values if self.override is None else self.override
        return torch.cat([v, v.new_ones(1)])

    def factor(self, site: int) -> torch.Tensor:
        """The broadcastable multiplier of one site."""
        return self.vector()[getattr(self, f"index_{site}")].reshape(self.shapes[site])

    def forward(self, x: torch.Tensor, site: int) -> torch.Tensor:
        return x * self.factor(site)


class StructureGates(nn.Module):
    """One scalar per structure (branch or block); ``x * values[k]``."""

    def __init__(self, n: int):
        super().__init__()
        self.values = nn.Parameter(torch.ones(n))

    def forward(self, x: torch.Tensor, site: int) -> torch.Tensor:
        return x * self.values[site]


@dataclass
class GatedModel:
    """A private, trainable copy of the traced model with gates inserted (see module docstring)."""

    gm: fx.GraphModule
    graph: DependencyGraph
    sites: list[GateSite]
    structures: list[Structure] = field(default_factory=list)

    @property
    def unit_gates(self) -> UnitGates:
        return self.gm.get_submodule(UNIT_GATES)

    @property
    def structure_gates(self) -> StructureGates | None:
        return self.gm.get_submodule(STRUCTURE_GATES) if self.structures else None

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.gm(*inputs)


def _operand(node: fx.Node, s: Structure) -> fx.Node:
    return node.args[0][s.index] if s.kind == "branch" else node.args[s.index]


def _set_operand(node: fx.Node, s: Structure, new: fx.Node) -> None:
    args = list(node.args)
    if s.kind == "branch":
        items = list(args[0])
        items[s.index] = new
        args[0] = type(node.args[0])(items)
    else:
        args[s.index] = new
    node.args = tuple(args)


def _insert_unit_sites(gm: fx.GraphModule, sites: Sequence[GateSite]) -> None:
    nodes = {n.name: n for n in gm.graph.nodes}
    for k, site in enumerate(sites):
        reader = nodes[site.node]
        current = next(a for a in reader.all_input_nodes if a.name == site.arg or
                       a.meta.get("gp_gated_from") == site.arg)
        with gm.graph.inserting_before(reader):
            gate = gm.graph.call_module(UNIT_GATES, (current,), {"site": k})
        gate.meta["gp_gated_from"] = site.arg
        reader.replace_input_with(current, gate)


def _insert_structure_sites(gm: fx.GraphModule, structures: Sequence[Structure]) -> None:
    nodes = {n.name: n for n in gm.graph.nodes}
    for k, s in enumerate(structures):
        node = nodes[s.node]
        with gm.graph.inserting_before(node):
            operand = _operand(node, s)
            gate = gm.graph.call_module(STRUCTURE_GATES, (operand,), {"site": k})
        gate.meta["gp_gated_from"] = operand.name
        _set_operand(node, s, gate)


def attach_gates(graph: DependencyGraph, gated_units: np.ndarray | None = None,
                 structures: Sequence[Structure] = ()) -> GatedModel:
    """Gate every site of ``graph`` (only ``gated_units`` if given) and each of ``structures``.

    The copy owns its parameters (deep copy), so training it never touches the user's model.
    """
    gm = copy.deepcopy(graph.traced.gm)
    sites = find_sites(graph)
    gm.add_submodule(UNIT_GATES, UnitGates(graph.n_units, sites, gated_units))
    # NOTE: structure gates go in first, so a unit gate on the same operand multiplies the gated value.
    if structures:
        gm.add_submodule(STRUCTURE_GATES, StructureGates(len(structures)))
        _insert_structure_sites(gm, structures)
    _insert_unit_sites(gm, sites)
    gm.graph.lint()
    gm.recompile()
    gm.train(graph.traced.was_training)
    return GatedModel(gm, graph, list(sites), list(structures))


def materialize(gated: GatedModel) -> fx.GraphModule:
    """A plain GraphModule: gate calls become ``mul`` by constants; gates equal to 1 disappear."""
    gm = copy.deepcopy(gated.gm)
    units, structs = gm.get_submodule(UNIT_GATES), gated.structure_gates
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or node.target not in (UNIT_GATES, STRUCTURE_GATES):
            continue
        site = node.kwargs["site"]
        with torch.no_grad():
            const = (units.factor(site) if node.target == UNIT_GATES else structs.values[site]).detach()
        (x,) = node.args
        if bool((const == 1).all()):
            node.replace_all_uses_with(x)
        else:
            with gm.graph.inserting_before(node):
                if const.ndim == 0:
                    new = gm.graph.call_function(torch.mul, (x, const.item()))
                else:
                    name = f"gp_gate_const_{site}"
                    gm.register_buffer(name, const.detach().clone())
                    new = gm.graph.call_function(torch.mul, (x, gm.graph.get_attr(name)))
            node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    for name in (UNIT_GATES, STRUCTURE_GATES):
        if hasattr(gm, name):
            delattr(gm, name)
    gm.graph.lint()
    gm.recompile()
    return gm

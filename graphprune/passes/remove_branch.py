"""Pass: remove a branch of a concat — the operand leaves the concat, consumers lose its input columns.

Rules (``find_branches`` is the analysis, ``check_branch`` the check, ``remove_branches`` the rewrite):

1. A *branch* is operand ``i`` of a concat (an op whose rule says ``combine="concat"``) of two or more tensors; its *private part* is the
   operand and its ancestors no other operand depends on (so removing it deletes the branch's layers).
2. Check, with a reason for refusing: the private nodes are used only inside the branch and by the
   concat (else they would stay, with no output channels); every element of the concat output that comes from operand ``i``
   is part of a prunable unit of the dependency graph, and those units touch only the branch's private
   nodes and the concat's descendants (otherwise removing the channels would change something that is
   not the branch's output); at least one operand of each concat remains.
3. Rewrite: with ``keep`` = every unit except the branch's (``branch_keep``), the rewrite pipeline slices
   parameters and applies the op rules' size fixes (the consumers' input columns for those channels go);
   this module's pass ``drop_branches`` then drops operand ``i`` from the concat (one remaining operand
   replaces the concat) and deletes dead nodes (the branch), then unused submodules; the pipeline verifies
   every remaining value has its planned shape.  ``graphprune.passes.remove_branches`` runs all of it.

Before / after (c1 + c2 + c3 = conv.in_channels)::

    y = conv(cat([b1(x), b2(x), b3(x)], 1))   ->   y = conv'(cat([b1(x), b3(x)], 1)),  conv' reads c1 + c3

The result equals the original with operand ``i`` multiplied by 0, which is what GAL's branch mask at 0
computes; ``tests/passes/test_remove_branch.py`` holds it to that.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch.fx as fx

from ..depgraph import DependencyGraph, Dim
from ..depgraph.rules import op_facts
from .remove_block import private_parts
from .verify import RewriteError

__all__ = ["Branch", "find_branches", "check_branch", "branch_units", "branch_keep", "drop_branches"]


@dataclass(frozen=True)
class Branch:
    """Operand ``index`` of concat node ``concat``; ``private`` names the branch's own nodes."""

    concat: str
    index: int
    private: tuple[str, ...]


def _cat_operands(node: fx.Node) -> list[fx.Node] | None:
    if node.op != "call_function" or op_facts(node).combine != "concat":
        return None
    items = node.args[0] if node.args else node.kwargs.get("tensors")
    if not isinstance(items, (list, tuple)) or len(items) < 2 or not all(isinstance(t, fx.Node) for t in items):
        return None
    return list(items)


def _cat_dim(node: fx.Node) -> int:
    return node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)


def find_branches(gm: fx.GraphModule) -> list[Branch]:
    """Every operand of every concat whose private part is not empty (rule 1), in graph order."""
    out = []
    for node in gm.graph.nodes:
        operands = _cat_operands(node)
        if operands is None:
            continue
        for i, part in enumerate(private_parts(operands)):
            if part:
                out.append(Branch(node.name, i, tuple(n.name for n in gm.graph.nodes if n in part)))
    return out


def branch_units(graph: DependencyGraph, branch: Branch) -> np.ndarray | None:
    """Unit ids of the concat-output elements that come from the branch (None if any is frozen)."""
    node = next(n for n in graph.traced.gm.graph.nodes if n.name == branch.concat)
    operands = _cat_operands(node)
    axis = _cat_dim(node) % len(graph.shapes[node.name])
    sizes = [graph.shapes[o.name][axis] for o in operands]
    lo = sum(sizes[:branch.index])
    c = graph.dim_class.get(Dim(node.name, axis))
    if c is None:
        return None
    units = graph.element_unit[graph.class_offset[c] + lo:graph.class_offset[c] + lo + sizes[branch.index]]
    return None if (units < 0).any() else np.unique(units)


def _descendants(node: fx.Node) -> set[fx.Node]:
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.users)
    return seen


def _owner(value: str, nodes: dict) -> set[str]:
    """Node names a value belongs to: the node itself; for a parameter or buffer, the nodes that use it
    (calls of its module, users of a ``get_attr`` of it)."""
    if not value.startswith("@"):
        node = nodes.get(value.split("#")[0])
        if node is not None and node.op == "get_attr":  # a constant read: it belongs to its readers
            return {u.name for u in node.users}
        return {value.split("#")[0]}
    module = value[1:].rpartition(".")[0]
    owners = set()
    for n in nodes.values():
        if n.op == "call_module" and n.target == module:
            owners.add(n.name)
        elif n.op == "get_attr" and n.target == value[1:]:
            owners.update(u.name for u in n.users)
    return owners


def check_branch(graph: DependencyGraph, branch: Branch) -> str:
    """Why the branch cannot be removed, or '' (rule 2)."""
    gm = graph.traced.gm
    nodes = {n.name: n for n in gm.graph.nodes}
    private = set(branch.private)
    leaks = [n for n in branch.private if any(u.name not in private | {branch.concat} for u in nodes[n].users)]
    if leaks:
        return f"branch {branch.index} of {branch.concat}: {leaks[0]} is also used outside the branch"
    units = branch_units(graph, branch)
    if units is None:
        return f"branch {branch.index} of {branch.concat} has frozen channels"
    allowed = set(branch.private) | {n.name for n in _descendants(nodes[branch.concat])}
    counts = graph._unit_counts.tocsc()
    for u in units:
        for c in counts.indices[counts.indptr[u]:counts.indptr[u + 1]]:
            for d in graph.class_dims[c]:
                outside = _owner(d.value, nodes) - allowed
                if outside:
                    return (f"branch {branch.index} of {branch.concat}: its channels are coupled to "
                            f"{sorted(outside)[0]}, outside the branch and the concat's consumers")
    return ""


def _drop_operands(gm: fx.GraphModule, concat: str, indices: set[int]) -> None:
    node = next(n for n in gm.graph.nodes if n.name == concat)
    operands = _cat_operands(node)
    remaining = [o for i, o in enumerate(operands) if i not in indices]
    if len(remaining) == 1:
        node.replace_all_uses_with(remaining[0])
        gm.graph.erase_node(node)
    elif node.args:
        node.args = (type(node.args[0])(remaining),) + tuple(node.args[1:])
    else:
        node.kwargs = {**node.kwargs, "tensors": type(node.kwargs["tensors"])(remaining)}


def _by_concat(graph: DependencyGraph, branches: list[Branch]) -> dict[str, set[int]]:
    """Concat name -> operand indices to drop; ``RewriteError`` with the check's reason (rule 2)."""
    by_concat: dict[str, set[int]] = {}
    for b in branches:
        reason = check_branch(graph, b)
        if reason:
            raise RewriteError(f"cannot remove {b.concat}[{b.index}]: {reason}", node=b.concat)
        by_concat.setdefault(b.concat, set()).add(b.index)
    for concat, indices in by_concat.items():
        n_ops = len(_cat_operands(next(n for n in graph.traced.gm.graph.nodes if n.name == concat)))
        if len(indices) >= n_ops:
            raise RewriteError(f"cannot remove every operand of {concat}", node=concat)
    return by_concat


def branch_keep(graph: DependencyGraph, branches: Iterable[Branch]) -> np.ndarray:
    """Every unit except the branches' (rule 3); ``RewriteError`` with the check's reason (rule 2)."""
    branches = list(branches)
    _by_concat(graph, branches)
    keep = graph.full_keep()
    for b in branches:
        keep[branch_units(graph, b)] = False
    return keep


def drop_branches(gm: fx.GraphModule, graph: DependencyGraph, handover) -> None:
    """Pipeline pass (after slicing and the rules' size fixes): drop ``handover.branches`` from their concats.

    Reads ``handover.branches`` and ``handover.keep`` (which must drop the branches' units); rewrites
    ``gm``'s graph: the operands leave their concats, dead nodes and unused submodules go (rule 3)."""
    if not handover.branches:
        return
    by_concat = _by_concat(graph, handover.branches)
    kept = [b for b in handover.branches if handover.keep[branch_units(graph, b)].any()]
    if kept:
        raise RewriteError(f"the keep mask holds channels of branch {kept[0].index} of {kept[0].concat}, which "
                           "is being removed: drop its units (branch_keep)", node=kept[0].concat)
    for concat, indices in by_concat.items():
        _drop_operands(gm, concat, indices)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()

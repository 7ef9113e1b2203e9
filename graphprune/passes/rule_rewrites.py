"""Pass: let each op's rule fix what still encodes old sizes.

Reads: the op-rule table and the kept indices.  Rewrites, in two steps:

1. ``bake_size_reads``: numbers the model computes from tensor sizes (``depgraph/rules/size_reads.py``).
   A number that would differ on the pruned shapes gets its original value as a literal
   (``h / h.shape[1]``, ``q.size(-1) ** -0.5``); a size entry of ``view``/``reshape``/``expand``/factories
   that would not equal the planned size of its output axis gets the planned size.  The rest stays symbolic.
2. every rule's ``rewrite`` hook: module attributes (``Conv2d.out_channels``, ``groups``,
   ``LayerNorm.normalized_shape``, attention head dims …) and node arguments (literal sizes in
   ``view``/``reshape``/``expand``, slice bounds, ``split`` sizes, SDPA ``scale``).

Runs after ``slice_parameters``, so hooks may read the new parameter shapes.
"""
from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch.fx as fx

from ..depgraph import DependencyGraph, Dim
from ..depgraph.rules import lookup_rule
from ..depgraph.rules.size_reads import UNKNOWN, SizeEntries, SizeEvaluator, size_slots, write_size_entries
from .rewrite_context import RewriteContext

__all__ = ["apply_rule_rewrites", "bake_size_reads"]


def apply_rule_rewrites(gm: fx.GraphModule, graph: DependencyGraph, keep: np.ndarray) -> bool:
    changed = bake_size_reads(gm, graph, keep)
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        rule = lookup_rule(node, modules)
        if rule is None or rule.rewrite is None:
            continue
        module = modules.get(node.target) if node.op == "call_module" else None
        rule.rewrite(RewriteContext(node, module, graph, keep))
        changed = True
    return changed


class _Sizes:
    """Original and pruned values of the size arithmetic of one graph under one plan."""

    def __init__(self, graph: DependencyGraph, keep: np.ndarray):
        self.graph, self.keep = graph, keep
        self.old = SizeEvaluator(graph.shapes, graph.shapes.__getitem__)
        self.new = SizeEvaluator(graph.shapes, self.pruned_shape)

    def planned(self, d: Dim) -> int:
        if d not in self.graph.dim_class:
            return self.graph.shapes[d.value][d.axis]
        return len(self.graph.kept_indices(d, self.keep))

    def pruned_shape(self, value: str) -> tuple[int, ...]:
        return tuple(self.planned(Dim(value, a)) for a in range(len(self.graph.shapes[value])))

    def is_number(self, node: Any) -> bool:
        """``node`` is Python arithmetic on sizes (not a tensor, evaluable)."""
        return isinstance(node, fx.Node) and self.old.value(node) is not UNKNOWN


def _keep_original_numbers(arg: Any, sizes: _Sizes) -> Any:
    """``arg`` with every size-derived number that the pruned shapes would change replaced by its original value."""
    if isinstance(arg, fx.Node):
        if sizes.is_number(arg) and sizes.new.value(arg) != sizes.old.value(arg):
            return sizes.old.value(arg)
        return arg
    if isinstance(arg, (list, tuple)):
        return type(arg)(_keep_original_numbers(a, sizes) for a in arg)
    if isinstance(arg, slice):
        return slice(*(_keep_original_numbers(v, sizes) for v in (arg.start, arg.stop, arg.step)))
    if isinstance(arg, dict):
        return {k: _keep_original_numbers(v, sizes) for k, v in arg.items()}
    return arg


def _planned_entries(gm: fx.GraphModule, node: fx.Node, slots: SizeEntries, sizes: _Sizes) -> list | None:
    """The size entries with each number that would not give its axis's planned size made that literal."""
    axis = lambda j: Dim(node.name, slots.first_axis + j)  # noqa: E731
    n_axes = len(sizes.graph.shapes[node.name])
    whole = slots.entries[0] if slots.form == "whole" else None
    if whole is not None and isinstance(sizes.old.value(whole), tuple):
        # one node gives the whole shape (``y.view(x.shape)``): split it where an entry must change
        old, new = sizes.old.value(whole), sizes.new.value(whole)
        if slots.first_axis + len(old) > n_axes:
            return None
        want = tuple(-1 if o == -1 else sizes.planned(axis(j)) for j, o in enumerate(old))
        if new == want:
            return None
        with gm.graph.inserting_before(node):
            return [w if n != w else gm.graph.call_function(operator.getitem, (whole, j))
                    for j, (n, w) in enumerate(zip(new, want))]
    entries, changed = list(slots.entries), False
    for j, e in enumerate(entries):
        if slots.first_axis + j >= n_axes or not sizes.is_number(e) or sizes.old.value(e) == -1:
            continue
        want = sizes.planned(axis(j))
        if sizes.new.value(e) != want:
            entries[j], changed = want, True
    return entries if changed else None


def _erase_unused_numbers(gm: fx.GraphModule, sizes: _Sizes) -> None:
    """Size arithmetic left without users once its value became a literal (pure Python: safe to drop)."""
    for node in reversed(list(gm.graph.nodes)):
        if not node.users and node.op in ("call_function", "call_method") and sizes.is_number(node):
            gm.graph.erase_node(node)


def bake_size_reads(gm: fx.GraphModule, graph: DependencyGraph, keep: np.ndarray) -> bool:
    """Rules 1 and 2 of ``depgraph/rules/size_reads.py``: make size arithmetic mean what it meant."""
    sizes, changed = _Sizes(graph, keep), False
    for node in list(gm.graph.nodes):
        if node.op in ("placeholder", "get_attr") or sizes.is_number(node):
            continue  # size arithmetic itself is judged where a tensor op (or the output) takes it
        slots = size_slots(node, graph.shapes)
        skip_index, skip_key = (None, None) if slots is None else (slots.spec.index, slots.spec.key)
        varargs = slots is not None and slots.form == "varargs"
        args = tuple(a if i == skip_index or (varargs and i >= skip_index) else _keep_original_numbers(a, sizes)
                     for i, a in enumerate(node.args))
        kwargs = {k: v if k == skip_key else _keep_original_numbers(v, sizes) for k, v in node.kwargs.items()}
        if args != node.args or kwargs != node.kwargs:
            node.args, node.kwargs, changed = args, kwargs, True
        entries = _planned_entries(gm, node, slots, sizes) if slots is not None else None
        if entries is not None:
            write_size_entries(node, slots, entries)
            changed = True
    if changed:
        _erase_unused_numbers(gm, sizes)
        gm.graph.lint()
        gm.recompile()
    return changed

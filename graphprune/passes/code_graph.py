"""Analysis: does the model's own code, at the pruned widths, give the pruned graph?

Reads two graphs: the *code graph* (the user's class with pruned tensors and sizes, captured again by the
same front end) and the *pruned graph* (the rewrite pipeline's output).  Rewrites nothing.  They are the
same program when, node by node in order:

1. op, name and target agree (a rewrite that replaced a call — uneven ``chunk`` sizes become a ``split`` —
   or folded constants, removed blocks or branches, gives another node);
2. arguments agree, nodes by name and literals by value; a tuple equals a list of the same sizes (rule
   rewrites write lists); ``x[:, :12]`` equals ``x[:, 0:12]``; and an index equals another that selects
   the same ranges of the pruned input (``x[:, 4:]`` and ``x[:, 4:14]`` on 14 channels).

The first difference is returned as a :class:`Difference`, with the source line when the front end recorded
one and, where only integers differ, the (code, pruned) integer pairs: the sizes the code bakes.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx

__all__ = ["Difference", "first_difference", "same_value", "shown_args"]


@dataclass
class Difference:
    """Where the code graph departs from the pruned graph, in words (``text``), at ``node`` of the code graph.

    ``sizes``: the (code, pruned) integer pairs when only integer literals differ (a baked size), else empty.
    """

    text: str
    node: fx.Node
    index: int  # the node's position in the graph: a later first difference is progress
    sizes: list[tuple[int, int]] = field(default_factory=list)


def _where(node: fx.Node) -> str:
    """The innermost source line of a node's stack trace, when the front end recorded one."""
    lines = [s.strip() for s in (node.meta.get("stack_trace") or "").strip().splitlines()]
    files = [i for i, s in enumerate(lines) if s.startswith("File ")]
    if not files:
        return ""
    i = files[-1]
    code = lines[i + 1] if i + 1 < len(lines) else ""
    return f" ({lines[i]}: {code})" if code else f" ({lines[i]})"


def _slice_key(s: slice) -> tuple:
    """NOTE: ``x[:, :12]`` and ``x[:, 0:12]`` are one slice; the slice rewrite writes explicit starts."""
    step = 1 if s.step is None else s.step
    start = 0 if s.start is None and isinstance(step, int) and step > 0 else s.start
    return start, s.stop, step


def _index_key(node: fx.Node, shapes: dict[str, tuple[int, ...]]) -> tuple | None:
    """``x[i0, i1, ...]`` with slices and ints: each slice as the range it selects on the pruned shape of
    ``x``; None for any other node or index."""
    if node.target is not operator.getitem or len(node.args) != 2 or not isinstance(node.args[0], fx.Node):
        return None
    shape, index = shapes.get(node.args[0].name), node.args[1]
    index = index if isinstance(index, tuple) else (index,)
    if shape is None or len(index) > len(shape) or not all(isinstance(i, (slice, int)) for i in index):
        return None
    try:
        return tuple(i.indices(n) if isinstance(i, slice) else i for i, n in zip(index, shape))
    except TypeError:  # a bound that is a node (a size read): compare as written
        return None


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, slice) and isinstance(b, slice):
        return _slice_key(a) == _slice_key(b)
    if isinstance(a, fx.Node) or isinstance(b, fx.Node):
        return isinstance(a, fx.Node) and isinstance(b, fx.Node) and a.name == b.name
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape \
            and bool(torch.equal(a, b))
    return type(a) is type(b) and a == b


def _int_pairs(a: Any, b: Any, out: list[tuple[int, int]]) -> bool:
    """Collect the differing (a, b) integer pairs; False when anything but integers differs."""
    if isinstance(a, slice) and isinstance(b, slice):
        return _int_pairs(_slice_key(a), _slice_key(b), out)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_int_pairs(x, y, out) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_int_pairs(a[k], b[k], out) for k in a)
    if type(a) is int and type(b) is int:
        if a != b:
            out.append((a, b))
        return True
    return same_value(a, b)


def shown_args(args: Any) -> str:
    return str(fx.node.map_arg(args, lambda n: n.name))[:160]


def _same_call(a: fx.Node, b: fx.Node, shapes: dict[str, tuple[int, ...]]) -> bool:
    if same_value(a.args, b.args) and same_value(a.kwargs, b.kwargs):
        return True
    key = _index_key(a, shapes)
    return key is not None and key == _index_key(b, shapes) and same_value(a.args[0], b.args[0])


def _target(node: fx.Node) -> str:
    return getattr(node.target, "__name__", None) or str(node.target)


def first_difference(code_graph: fx.Graph, pruned_graph: fx.Graph,
                     shapes: dict[str, tuple[int, ...]]) -> Difference | None:
    """The first node where ``code_graph`` departs from ``pruned_graph`` (values of the pruned graph have
    ``shapes``; rules 1-2 of the module docstring), or None when they are the same program."""
    code_nodes, pruned_nodes = list(code_graph.nodes), list(pruned_graph.nodes)
    for index, (a, b) in enumerate(zip(code_nodes, pruned_nodes)):
        if a.op != b.op or a.name != b.name or not same_value(a.target, b.target):
            return Difference(f"the pruned graph has node '{b.name}' ({b.op} {_target(b)}) where the model's code "
                              f"gives '{a.name}' ({a.op} {_target(a)}){_where(a)}: the rewrite changed the "
                              "operation (uneven chunks become a split; folded constants, removed blocks)", a, index)
        if not _same_call(a, b, shapes):
            sizes: list[tuple[int, int]] = []
            only_ints = _int_pairs((a.args, a.kwargs), (b.args, b.kwargs), sizes)
            return Difference(f"node '{b.name}' ({b.op} {_target(b)}){_where(a)}: the model's code passes "
                              f"{shown_args(a.args)}{shown_args(a.kwargs) if a.kwargs else ''} where the pruned widths need "
                              f"{shown_args(b.args)}{shown_args(b.kwargs) if b.kwargs else ''}: a size is baked into the "
                              "forward (a literal, or an attribute graphprune does not update)", a, index,
                              sizes if only_ints else [])
    if len(code_nodes) != len(pruned_nodes):
        return Difference(f"the model's code gives {len(code_nodes)} nodes, the pruned graph {len(pruned_nodes)}: "
                          "the rewrite changed the graph's structure (folded constants, removed blocks or branches)",
                          code_nodes[-1], len(code_nodes))
    return None

"""The in-place proof for recorded models: does the user's code, at the pruned widths, compute the pruned widths?

A recorded graph replays the example's selections (``record_capture``, rule 4), and a pruned model equals the
*masked* original, whose selections differ: the user's class at the pruned widths, recorded again, is a
different program after the first selection (other box counts, other ``topk`` sizes).  So the proof does not
compare whole graphs; it compares what pruning changed:

1. record the candidate (the user's class with sliced tensors and updated size attributes) on the example;
2. align its ops with the pruned graph's, op by op (target and module scope, as the probe comparison does);
3. every value of the pruned graph with a *pruned axis* (an axis whose size differs from the original
   recording's) must have that size in the candidate's recording too.  A size baked into the code
   (``x.view(n, 256, -1)``, an attribute no rule updates) shows up as the old width there, or as code that no
   longer runs; either refuses, naming the node and the module.

Axes that pruning did not touch (batch, spatial, box counts that depend on the data) are not compared: they
are the user's own code running on its own inputs.
"""
from __future__ import annotations

import difflib

import torch
import torch.fx as fx

from ..trace import TracedModel
from .record_capture import capture_by_running
from .record_freeze import _key, _scope_name

__all__ = ["record_difference"]


def _pruned_axes(name: str, before: dict, after: dict) -> list[int]:
    old, new = before.get(name), after.get(name)
    if old is None or new is None or len(old) != len(new):
        return []
    return [a for a, (o, n) in enumerate(zip(old, new)) if o != n]


def record_difference(candidate: torch.nn.Module, pruned: fx.GraphModule, traced: TracedModel,
                      pruned_shapes: dict) -> str:
    """'' when every pruned width of ``pruned`` is computed by ``candidate``'s code (module docstring), else why."""
    try:
        code = capture_by_running(candidate, traced.example_inputs, probe=None)
    except Exception as exc:  # the model's own code refuses the new sizes: that is the answer
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return f"the model's code does not run at the pruned widths: {first}"
    ours = [n for n in pruned.graph.nodes if n.op == "call_function"]
    theirs = [n for n in code.gm.graph.nodes if n.op == "call_function"]
    matcher = difflib.SequenceMatcher(None, [_key(n) for n in ours], [_key(n) for n in theirs], autojunk=False)
    twin: dict[fx.Node, fx.Node] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            twin[ours[block.a + k]] = theirs[block.b + k]
    for node in ours:
        axes = _pruned_axes(node.name, traced.shapes, pruned_shapes)
        if not axes:
            continue
        other = twin.get(node)
        if other is None:
            return (f"node '{node.name}' ({node.target}) in module {_scope_name(node)} has pruned channels but "
                    "the model's code at the pruned widths runs no matching op")
        want, got = pruned_shapes[node.name], code.shapes.get(other.name)
        if got is None or any(a >= len(got) or got[a] != want[a] for a in axes):
            return (f"node '{node.name}' ({node.target}) in module {_scope_name(node)}: the model's code at the "
                    f"pruned widths gives shape {got}, the pruned graph {want} (a width the code bakes in)")
    return ""

"""Pass (after the pipeline): give the user back their own class, when its code allows it.

The rewrite pipeline yields a pruned ``fx.GraphModule``.  Where the user's Python computes every size it
uses from its modules and tensors, the same pruning can live in a copy of the user's model instead: same
class, same methods (``predict``, ``generate``, ``save_pretrained``), same ``state_dict`` keys, smaller
tensors.  This pass builds that copy and proves it equal to the pruned graph, or says why it cannot.

Reads: the pruned GraphModule, the ``TracedModel`` (its untouched ``source`` copy of the user's model and,
on the fx front end, its traced module tree) and a ``recapture`` function (the front end with the same
settings).  Never touches the user's model.  Steps:

1. **Tensors by name.**  A deep copy of ``traced.source`` takes every parameter and buffer from the pruned
   model under the same qualified name (ties stay ties, ``requires_grad`` and persistence as pruned).  A
   name the pruned model lacks, or a sliced tensor the user's model does not hold as a parameter or buffer
   (an fx/export constant: a tensor attribute baked into the code), refuses.
2. **Size attributes.**  Every module whose own tensors changed shape gets its row of
   ``resize_modules.SIZE_RULES`` (``out_channels``, ``num_features``, ``normalized_shape`` …); on the fx front
   end the attributes the rule rewrites set on the pruned module of the same name are copied over too
   (they are authoritative, e.g. for a norm without affine tensors).  A Hugging Face config gets its uniform
   widths (``hf_config``).
3. **Proof by recapture.**  The copy is captured again with the same front end and its graph compared with
   the pruned graph node by node: same ops, same targets, same literal arguments, same shapes.  A size the
   forward bakes (``x.view(-1, 512)``, an attribute no rule updates, ``torch.export``'s literals from
   Python ints) shows up as the old literal where the pruned graph has the new one; a folded constant or a
   removed block shows up as a different node.  Either refuses, naming the node and the source line.

``choose_output`` applies the ``output=`` option: ``"graph"`` keeps the GraphModule, ``"module"`` returns the
copy or raises ``InPlaceError`` with the reason, ``"auto"`` returns the copy when possible, else the graph
and the reason (``PruneReport.output_reason``).
"""
from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn as nn

from ..trace import TracedModel, propagate_shapes
from .hf_config import update_config
from .resize_modules import resize_attributes

__all__ = ["OUTPUTS", "InPlaceError", "InPlace", "rewrite_in_place", "choose_output", "graph_difference"]

OUTPUTS = ("auto", "module", "graph")


class InPlaceError(ValueError):
    """``output="module"`` was asked for and the model's code bakes a pruned size (the message says where)."""


@dataclass
class InPlace:
    """The user's class at the pruned widths (``model``), or why not (``reason``); ``notes`` on its config."""

    model: nn.Module | None
    reason: str = ""
    notes: list[str] = field(default_factory=list)


def _named_tensors(module: nn.Module):
    return chain(module.named_parameters(remove_duplicate=False), module.named_buffers(remove_duplicate=False))


def _tensor_memo(pruned: fx.GraphModule, traced: TracedModel) -> tuple[dict[int, torch.Tensor], str]:
    """id(source tensor) -> the pruned tensor of the same name; or a reason why some tensor cannot be placed."""
    pruned_tensors = dict(_named_tensors(pruned))
    memo: dict[int, Any] = {}
    names = set()
    for name, t in _named_tensors(traced.source):
        names.add(name)
        if name not in pruned_tensors:
            return {}, f"'{name}' is not in the pruned model"
        memo.setdefault(id(t), pruned_tensors[name])
    traced_tensors = dict(_named_tensors(traced.gm))
    for name, t in pruned_tensors.items():
        before = traced_tensors.get(name)
        if name not in names and before is not None and before.shape != t.shape:
            return {}, (f"'{name}' was sliced but is not a parameter or buffer of the model (a tensor constant "
                        "of the forward's code): the model's code holds it at the old size")
    return memo, ""


def _copy_rule_attributes(candidate: nn.Module, pruned: fx.GraphModule, traced: TracedModel) -> None:
    """fx front end: the size attributes the rule rewrites set on each pruned module, onto the copy's."""
    before = dict(traced.gm.named_modules())
    after = dict(pruned.named_modules())
    for name, module in candidate.named_modules():
        old, new = before.get(name), after.get(name)
        if old is None or new is None or type(new) is not type(module):
            continue
        for attr, value in vars(new).items():
            if attr.startswith("_") or attr == "training" or isinstance(value, (torch.Tensor, nn.Module)):
                continue
            if isinstance(value, (int, float, bool, tuple, list)) and vars(old).get(attr) != value:
                setattr(module, attr, copy.copy(value))


def _build_copy(pruned: fx.GraphModule, traced: TracedModel) -> InPlace:
    """Steps 1-2 of the module docstring."""
    memo, reason = _tensor_memo(pruned, traced)
    if reason:
        return InPlace(None, reason)
    candidate = copy.deepcopy(traced.source, memo)
    old_shapes = {name: t.shape for name, t in _named_tensors(traced.source)}
    for name, module in candidate.named_modules():
        own = chain(module.named_parameters(recurse=False), module.named_buffers(recurse=False))
        prefix = f"{name}." if name else ""
        if any(old_shapes[prefix + attr] != t.shape for attr, t in own):
            resize_attributes(module)
    if traced.front_end == "fx":
        _copy_rule_attributes(candidate, pruned, traced)
    notes = update_config(candidate)
    if traced.keep_hooks:
        modules = dict(candidate.named_modules(remove_duplicate=False))
        for record in traced.hooks:
            record.register_on(modules[record.module])
    return InPlace(candidate, notes=notes)


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
    ``x`` (``x[:, 4:]`` and ``x[:, 4:14]`` select the same channels of a 14-channel ``x``); None otherwise."""
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


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, slice) and isinstance(b, slice):
        return _slice_key(a) == _slice_key(b)
    if isinstance(a, fx.Node) or isinstance(b, fx.Node):
        return isinstance(a, fx.Node) and isinstance(b, fx.Node) and a.name == b.name
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        # NOTE: a rule rewrite may write a list where the code passes a tuple (``normalized_shape``): same sizes
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape \
            and bool(torch.equal(a, b))
    return type(a) is type(b) and a == b


def _shown(args: Any) -> str:
    return str(args if not isinstance(args, tuple) else fx.node.map_arg(args, lambda n: n.name))[:160]


def _same_call(a: fx.Node, b: fx.Node, shapes: dict[str, tuple[int, ...]]) -> bool:
    if _same(a.args, b.args) and _same(a.kwargs, b.kwargs):
        return True
    key = _index_key(a, shapes)
    return key is not None and key == _index_key(b, shapes) and _same(a.args[0], b.args[0])


def graph_difference(code_graph: fx.Graph, pruned_graph: fx.Graph, shapes: dict[str, tuple[int, ...]]) -> str:
    """The first node where ``code_graph`` (the copy, captured again) differs from ``pruned_graph``, whose
    values have ``shapes``; '' if none."""
    code_nodes, pruned_nodes = list(code_graph.nodes), list(pruned_graph.nodes)
    for a, b in zip(code_nodes, pruned_nodes):
        if a.op != b.op or a.name != b.name or not _same(a.target, b.target):
            return (f"the pruned graph has node '{b.name}' ({b.op} {b.target}) where the model's code gives "
                    f"'{a.name}' ({a.op} {a.target}){_where(a)}: the rewrite changed the graph's structure "
                    "(folded constants, removed blocks or branches)")
        if not _same_call(a, b, shapes):
            return (f"node '{b.name}' ({b.op} {b.target}){_where(a)}: the model's code passes "
                    f"{_shown(a.args)}{_shown(a.kwargs) if a.kwargs else ''} where the pruned widths need "
                    f"{_shown(b.args)}{_shown(b.kwargs) if b.kwargs else ''}: a size is baked into the "
                    "forward (a literal, or an attribute graphprune does not update)")
    if len(code_nodes) != len(pruned_nodes):
        return (f"the model's code gives {len(code_nodes)} nodes, the pruned graph has {len(pruned_nodes)}: the "
                "rewrite changed the graph's structure (folded constants, removed blocks or branches)")
    return ""


def _rewritten_sizes(traced: TracedModel, pruned: fx.GraphModule) -> str:
    """fx front end: the calls whose literal arguments the rewrite changed, i.e. sizes the code writes out
    (the likely culprits when the code does not run at the pruned widths); '' for torch.export, whose
    literals also come from module attributes."""
    if traced.front_end != "fx":
        return ""
    before = {n.name: n for n in traced.gm.graph.nodes}
    changed = [n for n in pruned.graph.nodes if n.op in ("call_function", "call_method") and n.name in before
               and not (_same(n.args, before[n.name].args) and _same(n.kwargs, before[n.name].kwargs))]
    shown = "; ".join(f"node '{n.name}' ({n.op} {getattr(n.target, '__name__', n.target)}) "
                      f"{_shown(before[n.name].args)} -> {_shown(n.args)}" for n in changed[:3])
    return f". Sizes baked into the forward that the pruned graph rewrote: {shown}" if changed else ""


def rewrite_in_place(pruned: fx.GraphModule, traced: TracedModel,
                     recapture: Callable[[nn.Module], TracedModel]) -> InPlace:
    """The user's class at the pruned widths, proven equal to ``pruned`` (module docstring), or the reason."""
    if traced.source is None:
        return InPlace(None, "the capture kept no copy of the user's model")
    built = _build_copy(pruned, traced)
    if built.model is None:
        return built
    try:
        again = recapture(built.model)
    except Exception as exc:  # the model's own code refuses the new sizes: that is the answer
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        return InPlace(None, f"the model's code does not run at the pruned widths: {type(exc).__name__}: {first}"
                       + _rewritten_sizes(traced, pruned))
    shapes = propagate_shapes(pruned, traced.example_inputs)
    reason = graph_difference(again.gm.graph, pruned.graph, shapes)
    if not reason:
        wrong = [v for v, s in again.shapes.items() if shapes.get(v, s) != s]
        if wrong:
            reason = (f"value '{wrong[0]}' has shape {again.shapes[wrong[0]]} in the model's code and "
                      f"{shapes[wrong[0]]} in the pruned graph")
    return InPlace(None, reason, built.notes) if reason else built


def choose_output(output: str, pruned: fx.GraphModule, traced: TracedModel,
                  recapture: Callable[[nn.Module], TracedModel]) -> tuple[nn.Module, str, str, list[str]]:
    """(model, kind ``"module"``/``"graph"``, reason the graph was kept, config notes) for ``output``."""
    if output == "graph":
        return pruned, "graph", "output='graph' was asked for", []
    done = rewrite_in_place(pruned, traced, recapture)
    if done.model is not None:
        return done.model, "module", "", done.notes
    if output == "module":
        raise InPlaceError(f"output='module': the pruned model cannot be the user's own class: {done.reason}. "
                           "Compute the size from the tensor (x.shape / x.size() / x.flatten(1)) in that code, "
                           "or pass output='graph' (or 'auto') to get the pruned torch.fx GraphModule")
    return pruned, "graph", done.reason, done.notes

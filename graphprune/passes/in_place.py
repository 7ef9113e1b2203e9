"""Pass (after the pipeline): give the user back their own class, when its code allows it.

The rewrite pipeline yields a pruned ``fx.GraphModule``.  Where the user's Python computes every size it
uses from its modules and tensors, the same pruning can live in a copy of the user's model instead: same
class, same methods (``predict``, ``generate``, ``save_pretrained``), same ``state_dict`` keys, smaller
tensors.  This pass builds that copy and proves it equal to the pruned graph, or says why it cannot.

Reads: the pruned GraphModule, the ``TracedModel`` (its untouched ``source`` copy of the user's model and,
on the fx front end, its traced module tree) and ``recapture`` (the front end with the same settings, giving
the graph of a model).  Never touches the user's model.  Steps:

1. **Tensors by name.**  A deep copy of ``traced.source`` takes every parameter and buffer from the pruned
   model under the same qualified name (ties stay ties, ``requires_grad`` and persistence as pruned).  A
   name the pruned model lacks, or a sliced tensor the user's model does not hold as a parameter or buffer
   (an fx/export constant: a tensor attribute baked into the code), refuses.
2. **Size attributes.**  Every module whose own tensors changed shape gets its row of
   ``resize_modules.SIZE_RULES`` (``out_channels``, ``num_features``, ``normalized_shape`` …); on the fx front
   end the attributes the rule rewrites set on the pruned module of the same name are copied over too
   (they are authoritative, e.g. for a norm without affine tensors).  A Hugging Face config gets its uniform
   widths (``hf_config``).
3. **Proof by recapture.**  The copy is captured again and its graph compared with the pruned graph node by
   node (``code_graph.first_difference``: same ops, targets, literal arguments), then run on fake tensors for
   the same shapes.  A size the forward bakes (``x.view(-1, 512)``, ``torch.export``'s literals from Python
   ints) shows up as the old literal where the pruned graph has the new one; a replaced call, folded constant
   or removed block as a different node.  Either refuses, naming the node and the source line.
4. **Sizes held in attributes.**  Where only integer literals differ, the size may come from an int attribute
   of a module whose code made the node (torchvision ViT's ``hidden_dim``, timm attention's ``head_dim``):
   such an attribute equal to the old size is set to the new one and step 3 repeats; it is kept only if the
   first difference moved on (else put back), and listed in the notes.  Only the proof of step 3 decides:
   an attribute the forward never reads is never kept.

What the proof covers: the code path the front end captured — inference (``eval``), and with torch.export the
example inputs' shapes.  A branch taken only in training (``if self.training: x = x.view(-1, 512)``) is not
captured, so not checked; the graph has the same blind spot (it follows inference there, with a warning).  On
other input shapes the copy runs the user's Python, so sizes read from tensors follow the input, where an
export-captured graph is fixed to the example inputs.

``choose_output`` applies the ``output=`` option: ``"graph"`` keeps the GraphModule, ``"module"`` returns the
copy or raises ``InPlaceError`` with the reason, ``"auto"`` returns the copy when possible, else the graph
and the reason (``PruneReport.output_reason``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn as nn

from ..capture.record_capture import specialised_to_example
from ..capture.record_proof import record_difference
from ..trace import TracedModel, propagate_shapes
from .code_graph import Difference, first_difference
from .hf_config import update_config
from .resize_modules import resize_attributes

__all__ = ["OUTPUTS", "InPlaceError", "InPlace", "rewrite_in_place", "choose_output"]

OUTPUTS = ("auto", "module", "graph")
MAX_ADOPTED_SIZES = 32  # size attributes step 4 may set on one model


class InPlaceError(ValueError):
    """``output="module"`` was asked for and the model's code bakes a pruned size (the message says where)."""


@dataclass
class InPlace:
    """The user's class at the pruned widths (``model``), or why not (``reason``).

    ``notes``: config fields set or left, attributes set (step 4); ``attributes``: the int attributes step 4 set,
    by qualified name (``"hidden_dim"``, ``"blocks.0.attn.head_dim"``), for ``rebuild_like(..., attributes=)``.
    """

    model: nn.Module | None
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    attributes: dict[str, int] = field(default_factory=dict)


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


@dataclass
class _Adopted:
    """One size attribute set on the copy: ``module.attr`` from ``old`` to its pruned value."""

    module: nn.Module
    attr: str
    old: int
    name: str  # qualified: module path + attribute
    new: int
    note: str

    def revert(self) -> None:
        setattr(self.module, self.attr, self.old)


def _owners(node: fx.Node, root: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose code made ``node``, innermost first, then the root (``nn_module_stack``)."""
    paths = [v[0] if isinstance(v, tuple) else str(v) for v in (node.meta.get("nn_module_stack") or {}).values()]
    owners = []
    for path in reversed(paths):
        try:
            owners.append((path, root.get_submodule(path)))
        except AttributeError:  # a path in the front end's own spelling: skipped
            continue
    return owners + [("", root)]


def _adopt_size(candidate: nn.Module, diff: Difference, tried: set) -> _Adopted | None:
    """Step 4: an int attribute of a module that made the node, equal to a size the code baked; set it."""
    new_of: dict[int, int] = {}
    for old, new in diff.sizes:
        if new_of.setdefault(old, new) != new:
            return None  # one old size, two new ones: no single attribute can say both
    for path, module in _owners(diff.node, candidate):
        for attr, value in list(vars(module).items()):
            if attr.startswith("_") or type(value) is not int or value not in new_of or (id(module), attr) in tried:
                continue
            tried.add((id(module), attr))
            setattr(module, attr, new_of[value])
            where = f"{path}.{attr}" if path else attr
            return _Adopted(module, attr, value, where, new_of[value],
                            f"{where} {value} -> {new_of[value]} (read at node '{diff.node.name}')")
    return None


@dataclass
class _Check:
    """The copy against the pruned graph: ``reason`` is '' when they are the same program."""

    reason: str
    diff: Difference | None = None

    def later_than(self, other: "_Check") -> bool:
        """Progress: no difference left, or the first one moved on (or kept fewer baked sizes)."""
        if self.diff is None:
            return not self.reason
        if other.diff is None:
            return False
        if self.diff.index != other.diff.index:
            return self.diff.index > other.diff.index
        return len(self.diff.sizes) < len(other.diff.sizes)


def _check(candidate: nn.Module, pruned: fx.GraphModule, traced: TracedModel, shapes: dict,
           recapture: Callable[[nn.Module], fx.GraphModule]) -> _Check:
    """Step 3: capture the copy again; same graph as ``pruned``, and the same shapes when run."""
    if traced.front_end == "record":  # NOTE: recordings replay the example's selections: pruned widths only
        return _Check(record_difference(candidate, pruned, traced, shapes))
    try:
        code = recapture(candidate)
    except Exception as exc:  # the model's own code refuses the new sizes: that is the answer
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        return _Check(f"the model's code does not run at the pruned widths: {type(exc).__name__}: {first}")
    diff = first_difference(code.graph, pruned.graph, shapes)
    if diff is not None:
        return _Check(diff.text, diff)
    try:
        code_shapes = propagate_shapes(code, traced.example_inputs)
    except Exception as exc:
        return _Check(f"the model's code does not run at the pruned widths: {type(exc).__name__}: "
                      f"{str(exc).strip()[:300]}")
    wrong = [v for v, s in code_shapes.items() if shapes.get(v, s) != s]
    if wrong:
        return _Check(f"value '{wrong[0]}' has shape {code_shapes[wrong[0]]} in the model's code and "
                      f"{shapes[wrong[0]]} in the pruned graph")
    return _Check("")


def rewrite_in_place(pruned: fx.GraphModule, traced: TracedModel,
                     recapture: Callable[[nn.Module], fx.GraphModule]) -> InPlace:
    """The user's class at the pruned widths, proven equal to ``pruned`` (module docstring), or the reason."""
    if traced.source is None:
        return InPlace(None, "the capture kept no copy of the user's model")
    built = _build_copy(pruned, traced)
    if built.model is None:
        return built
    shapes = propagate_shapes(pruned, traced.example_inputs)
    state, tried = _check(built.model, pruned, traced, shapes, recapture), set()
    for _ in range(MAX_ADOPTED_SIZES):
        adopted = _adopt_size(built.model, state.diff, tried) if state.diff and state.diff.sizes else None
        if adopted is None:
            break
        after = _check(built.model, pruned, traced, shapes, recapture)
        if after.later_than(state):
            built.notes.append(adopted.note)
            built.attributes[adopted.name] = adopted.new
            state = after
        else:  # that attribute was not where the size came from
            adopted.revert()
    return InPlace(None, state.reason) if state.reason else built


def choose_output(output: str, pruned: fx.GraphModule, traced: TracedModel,
                  recapture: Callable[[nn.Module], fx.GraphModule]) -> tuple[nn.Module, str, InPlace]:
    """(model, kind ``"module"``/``"graph"``, what the in-place attempt found) for ``output``."""
    specialised = specialised_to_example(traced)  # a recorded graph that only holds for its example input
    if output == "graph":
        if specialised:
            raise InPlaceError(f"output='graph' cannot be returned: {specialised}. Use output='module' or 'auto' "
                               "(your own class with the pruned layers)")
        return pruned, "graph", InPlace(None, "output='graph' was asked for")
    done = rewrite_in_place(pruned, traced, recapture)
    if done.model is not None:
        return done.model, "module", done
    if specialised:
        raise InPlaceError(f"the pruned model cannot be the user's own class: {done.reason}; and the recorded "
                           f"graph cannot stand in for it: {specialised}")
    if output == "module":
        raise InPlaceError(f"output='module': the pruned model cannot be the user's own class: {done.reason}. "
                           "Compute the size from the tensor (x.shape / x.size() / x.flatten(1)) in that code, "
                           "or pass output='graph' (or 'auto') to get the pruned torch.fx GraphModule")
    return pruned, "graph", done

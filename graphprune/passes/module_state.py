"""Pass: carry the user's module state over to the pruned GraphModule, name by name.

Reads: ``graph.traced.source`` (an untouched private copy of the user's module tree: the qualified
names, ``training`` flags and values at prune time) and ``graph.traced.hooks``.  Rewrites the pruned
GraphModule's module attributes, never its graph:

1. **Modes.**  Every module gets the ``training`` flag of the user's module with the same qualified name
   (a module without one, e.g. an fx-made intermediate, inherits its nearest ancestor's).  A model in
   train mode with frozen eval-mode BatchNorms stays exactly that.
2. **Names.**  Every parameter, buffer and submodule of the user's model that the graph does not read is
   put back under its qualified name, unchanged in size (nothing couples it to a pruned channel) and
   cloned (tied tensors stay tied).  One that cannot be put back (its name is taken by something else,
   or its owner is gone) is listed in ``ModuleStateReport.dropped`` with the reason.
3. **state_dict keys.**  Buffers the user's ``state_dict`` does not hold (fx constants
   ``_tensor_constantN``, plain tensor attributes, non-persistent buffers) are made non-persistent, so
   at budget 1.0 ``pruned.state_dict()`` has exactly the user's keys.
4. **Hooks** (only with ``keep_hooks``).  The user's hook functions are registered on the corresponding
   modules (root hooks on the GraphModule).  A hook sees the pruned module: one reading a pruned width
   sees the new width.

The report is stored in ``gm.meta[MODULE_STATE_KEY]``.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import torch
import torch.fx as fx

from ..depgraph import DependencyGraph
from ..trace import TracedModel

__all__ = ["ModuleStateReport", "MODULE_STATE_KEY", "carry_module_state", "warn_hooks_not_kept"]

MODULE_STATE_KEY = "graphprune.module_state"


@dataclass
class ModuleStateReport:
    """What ``carry_module_state`` put back, registered, or could not carry over (``name: reason``)."""

    restored: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)


def _named_tensors(module: torch.nn.Module):
    return chain(module.named_parameters(remove_duplicate=False), module.named_buffers(remove_duplicate=False))


def _copy_training_flags(gm: fx.GraphModule, source: torch.nn.Module) -> None:
    modes = {name: m.training for name, m in source.named_modules(remove_duplicate=False)}
    for name, module in gm.named_modules(remove_duplicate=False):
        owner = name
        while owner not in modes:  # no counterpart: the nearest ancestor's flag ("" always exists)
            owner = owner.rpartition(".")[0]
        module.training = modes[owner]


def _clone(t: torch.Tensor) -> torch.Tensor:
    new = t.detach().clone()
    return torch.nn.Parameter(new, t.requires_grad) if isinstance(t, torch.nn.Parameter) else new


def _mapped(t: torch.Tensor, same: dict[int, torch.Tensor]) -> torch.Tensor:
    held = same.get(id(t))
    return held if held is not None else _clone(t)


def _name_taken(module: torch.nn.Module, attr: str) -> bool:
    return any(attr in store for store in (module.__dict__, module._modules, module._parameters, module._buffers))


def _restore_modules(gm, source, same: dict[int, torch.Tensor], report: ModuleStateReport) -> dict:
    """Put back every submodule of ``source`` missing from ``gm`` (top-down, so children come along)."""
    modules = dict(gm.named_modules(remove_duplicate=False))
    held = {id(m): modules[name] for name, m in source.named_modules(remove_duplicate=False) if name in modules}
    for name, module in source.named_modules(remove_duplicate=False):
        if name in modules:
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = modules.get(parent_name)
        if parent is None:
            continue  # under a module that was itself dropped: reported there
        if _name_taken(parent, attr):
            report.dropped.append(f"{name}: the pruned model has another attribute under this name")
            continue
        if id(module) in held:  # one module under two names: the second name is an alias, as in the user's
            parent.add_module(attr, held[id(module)])
        else:
            memo = {id(t): _mapped(t, same) for _, t in _named_tensors(module)}
            parent.add_module(attr, copy.deepcopy(module, memo))
        modules.update(parent.get_submodule(attr).named_modules(prefix=name, remove_duplicate=False))
        report.restored.append(name)
    return modules


def _restore_tensors(gm, source, same: dict[int, torch.Tensor], report: ModuleStateReport) -> None:
    """Put back every parameter and buffer of ``source`` that ``gm`` lacks, persistence as in ``source``."""
    modules = _restore_modules(gm, source, same, report)
    present = {name for name, _ in _named_tensors(gm)}
    for name, t in _named_tensors(source):
        if name in present:
            continue
        owner_name, _, attr = name.rpartition(".")
        owner = modules.get(owner_name)
        if owner is None or _name_taken(owner, attr):
            why = "its module is not in the pruned model" if owner is None else \
                "the pruned model has another attribute under this name"
            report.dropped.append(f"{name}: {why}")
            continue
        new = _mapped(t, same)
        if isinstance(t, torch.nn.Parameter):
            owner.register_parameter(attr, new if isinstance(new, torch.nn.Parameter) else _clone(t))
        else:
            src_owner = source.get_submodule(owner_name)
            owner.register_buffer(attr, new, persistent=attr not in src_owner._non_persistent_buffers_set)
        present.add(name)
        report.restored.append(name)


def _match_state_dict_keys(gm: fx.GraphModule, source: torch.nn.Module) -> None:
    keys = set(source.state_dict(keep_vars=True))
    for name, _ in list(gm.named_buffers(remove_duplicate=False)):
        if name not in keys:
            owner_name, _, attr = name.rpartition(".")
            gm.get_submodule(owner_name)._non_persistent_buffers_set.add(attr)


def _register_hooks(gm: fx.GraphModule, traced: TracedModel, report: ModuleStateReport) -> None:
    modules = dict(gm.named_modules(remove_duplicate=False))
    for record in traced.hooks:
        label = f"{record.module or '<root>'} ({record.kind})"
        module = modules.get(record.module)
        if module is None:
            report.dropped.append(f"hook {label}: its module is not in the pruned model")
            continue
        record.register_on(module)
        report.hooks.append(label)


def carry_module_state(gm: fx.GraphModule, graph: DependencyGraph, keep: np.ndarray) -> bool:
    """Give ``gm`` the user's modes, unused names and (if asked) hooks; store the report in ``gm.meta``."""
    traced = graph.traced
    report = ModuleStateReport()
    if traced.source is None:
        gm.train(traced.was_training)
    else:
        same = {}  # a source tensor the pruned model holds under the same name: ties map onto it
        pruned = dict(_named_tensors(gm))
        for name, t in _named_tensors(traced.source):
            if name in pruned:
                same.setdefault(id(t), pruned[name])
        _restore_tensors(gm, traced.source, same, report)
        _match_state_dict_keys(gm, traced.source)
        _copy_training_flags(gm, traced.source)
    if traced.keep_hooks:
        _register_hooks(gm, traced, report)
    gm.meta[MODULE_STATE_KEY] = report
    return bool(report.restored or report.hooks)


def warn_hooks_not_kept(traced: TracedModel) -> None:
    """One warning listing the user's hooks that the pruned model does not have (``keep_hooks=False``)."""
    if traced.keep_hooks or not traced.hooks:
        return
    listed = ", ".join(f"{r.module or '<root>'} ({r.kind})" for r in traced.hooks)
    warnings.warn(
        f"graphprune: the model's hooks were not carried over to the pruned model: {listed}. Outputs computed "
        "through hooks that modify inputs or outputs will differ; pass keep_hooks=True to re-register them "
        "on the corresponding modules of the pruned model.", stacklevel=3)

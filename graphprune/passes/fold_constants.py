"""Pass: fold the constant inputs a reader is about to lose into the reader's bias.

A channel a learner switched off is often constant rather than zero: a BatchNorm with γ = 0 outputs β,
the activation after it φ(β), and a residual stream whose every γ is 0 carries a sum of such constants.
Removing that channel from the layer that reads it removes a constant term from the reader's output.
Where that term is exactly a bias — ``nn.Linear``, and ``nn.Conv1d/2d/3d`` with no padding and one group
(a padded conv sees zeros at the border instead of the constant) — it is added to the reader's bias
before the rewrite, so the pruned network computes what the learned network computed, not what it
computes with those channels zeroed.

Constancy is *measured*, not inferred: every candidate input column is observed over probe batches in
eval mode and folded when its range is within ``rtol`` of its magnitude. A column that is constant only
on the probe data (a ReLU that happened to stay shut) folds its constant, which is never worse than
dropping it.  Readers left alone are reported with the reason: padding, groups, or no bias to fold into
(a conv without bias is followed by BatchNorm in every network here; re-estimating that BatchNorm's
statistics absorbs the shift exactly when the conv has no padding).

Reads: ``graph`` (which input columns each reader loses under ``keep``) and probe batches.
Rewrites: the biases of readers in ``gm`` (``graph.traced.gm`` before the rewrite): new tensors, so the
model ``gm`` was traced from (which shares its tensors) is not changed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from ..depgraph import DependencyGraph, Dim
from ..depgraph.rules import op_facts
from ..module_modes import eval_mode

__all__ = ["FoldReport", "fold_constant_inputs", "dropped_columns", "fold_constants"]


@dataclass
class FoldReport:
    """``folded``: input columns whose constant went into a bias, per reader; ``skipped``: reader → why
    its constant columns were dropped without folding; ``biases``: reader → its new bias (to put the same
    fold into another copy of the network)."""

    folded: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    biases: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def columns(self) -> int:
        return sum(self.folded.values())

    def to_dict(self) -> dict:
        return {"folded_columns": self.columns, "readers": dict(self.folded), "skipped": dict(self.skipped)}


def dropped_columns(graph: DependencyGraph, module: str, keep: np.ndarray) -> np.ndarray:
    """Indices along the input axis (weight dim 1) of reader ``module`` that ``keep`` removes."""
    dim = Dim(graph.param_alias.get(f"@{module}.weight", f"@{module}.weight"), 1)
    if dim not in graph.dim_class:
        return np.zeros(0, dtype=np.int64)
    size = graph.class_size[graph.dim_class[dim]]
    return np.setdiff1d(np.arange(size), graph.kept_indices(dim, keep))


def _why_not(m: nn.Module) -> str:
    if m.bias is None:
        return "no bias to fold into"
    if isinstance(m, nn.modules.conv._ConvNd):
        if m.groups != 1:
            return f"grouped conv (groups={m.groups})"
        if m.padding == "same" or (m.padding != "valid" and any(p != 0 for p in m.padding)):
            return f"padding {m.padding}: border positions see zeros, not the constant"
    return ""


@torch.no_grad()
def _input_ranges(gm: fx.GraphModule, readers: dict[str, np.ndarray], batches: Iterable) -> dict[str, tuple]:
    """Per reader, (min, max) of each candidate column over every call on every probe batch."""
    ranges: dict[str, list] = {}
    hooks = []
    for name, cols in readers.items():
        m = gm.get_submodule(name)
        index = torch.as_tensor(cols)

        def hook(mod, args, out, name=name, index=index):
            x = args[0].detach()
            if isinstance(mod, nn.Linear):
                x = x.reshape(-1, x.shape[-1]).index_select(1, index)
                lo, hi = x.amin(0), x.amax(0)
            else:
                x = x.index_select(1, index).transpose(0, 1).reshape(len(index), -1)
                lo, hi = x.amin(1), x.amax(1)
            if name in ranges:
                ranges[name] = [torch.minimum(ranges[name][0], lo), torch.maximum(ranges[name][1], hi)]
            else:
                ranges[name] = [lo, hi]
        hooks.append(m.register_forward_hook(hook))
    try:
        with eval_mode(gm):
            for inputs in batches:
                gm(*inputs) if isinstance(inputs, (tuple, list)) else gm(inputs)
    finally:
        for h in hooks:
            h.remove()
    return {k: tuple(v) for k, v in ranges.items()}


@torch.no_grad()
def fold_constant_inputs(gm: fx.GraphModule, graph: DependencyGraph, keep: np.ndarray, batches: Iterable,
                         rtol: float = 1e-6) -> FoldReport:
    """Fold the constant columns each Linear / Conv reader loses under ``keep`` into its bias (module
    docstring); ``batches``: probe inputs (a tensor or a tuple of a call's positional inputs each)."""
    report = FoldReport()
    readers = {}
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op != "call_module" or not op_facts(node, modules).foldable_reader or node.target in readers:
            continue
        cols = dropped_columns(graph, node.target, keep)
        if len(cols):
            readers[node.target] = cols
    if not readers:
        return report
    ranges = _input_ranges(gm, readers, batches)
    for name, cols in readers.items():
        if name not in ranges:
            continue
        lo, hi = ranges[name]
        constant = (hi - lo) <= rtol * torch.maximum(hi.abs(), torch.ones_like(hi))
        value = (lo + hi) / 2
        if not bool(constant.any()) or not bool(value[constant].abs().gt(0).any()):
            continue
        m = gm.get_submodule(name)
        why = _why_not(m)
        if why:
            report.skipped[name] = why
            continue
        cols_c = torch.as_tensor(cols)[constant]
        w = m.weight.detach().index_select(1, cols_c)
        if w.ndim > 2:
            w = w.flatten(2).sum(2)  # every kernel tap reads the same constant
        # NOTE: replaced, not added in place: the traced model shares its tensors with the model it traced
        m.bias = nn.Parameter(m.bias.detach() + w @ value[constant].to(w.dtype), m.bias.requires_grad)
        report.folded[name] = int(constant.sum())
        report.biases[name] = m.bias.detach().clone()
    return report


FOLD_REPORT_KEY = "graphprune.folded_constants"


@torch.no_grad()
def fold_constants(gm: fx.GraphModule, graph: DependencyGraph, handover) -> None:
    """Pipeline pass (first, before any slicing): ``fold_constant_inputs`` on ``handover.fold_batches``.

    Reads ``handover.keep`` / ``fold_batches`` / ``folds``; rewrites the biases of readers in ``gm`` (new
    tensors).  When ``handover.folds`` is already set (this handover was rewritten before), the same biases
    are put in without measuring again.  The report lands in ``handover.folds`` and ``gm.meta``.
    """
    if handover.folds is None:
        if handover.fold_batches is None:
            return
        handover.folds = fold_constant_inputs(gm, graph, handover.keep, handover.fold_batches)
    else:
        for name, bias in handover.folds.biases.items():
            m = gm.get_submodule(name)
            m.bias = nn.Parameter(bias.clone(), m.bias.requires_grad)
    gm.meta[FOLD_REPORT_KEY] = handover.folds

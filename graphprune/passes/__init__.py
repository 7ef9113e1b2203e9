"""Stage 5: rewrite passes — one flat, named pipeline applied to a copy of the traced graph.

``REWRITE_PIPELINE`` runs top to bottom; each pass is ``fn(gm, graph, handover)``, where the
:class:`Handover` is what the strategy handed over: the keep mask, and (from the training-time learners)
residual blocks and concat branches to remove and probe batches for constant folding.  A pass whose field
is empty does nothing.  A failure names the pass and the passes that ran before it.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.fx as fx

from ..depgraph import DependencyGraph
from ..trace import structure_copy
from .fold_constants import fold_constants
from .handover import Handover
from .masked_reference import masked_model
from .module_state import MODULE_STATE_KEY, ModuleStateReport, carry_module_state, warn_hooks_not_kept
from .remove_block import bypass_blocks
from .remove_branch import Branch, branch_keep, drop_branches
from .rule_rewrites import apply_rule_rewrites
from .slice_parameters import slice_parameters
from .verify import RewriteError, verify_shapes

__all__ = ["REWRITE_PIPELINE", "Handover", "rewrite", "remove_branches", "masked_model", "RewriteError",
           "ModuleStateReport", "MODULE_STATE_KEY", "warn_hooks_not_kept"]


def _slice_parameters(gm: fx.GraphModule, graph: DependencyGraph, h: Handover) -> None:
    slice_parameters(gm, graph, h.keep)


def _apply_rule_rewrites(gm: fx.GraphModule, graph: DependencyGraph, h: Handover) -> None:
    apply_rule_rewrites(gm, graph, h.keep)


def _verify_shapes(gm: fx.GraphModule, graph: DependencyGraph, h: Handover) -> None:
    verify_shapes(gm, graph, h.keep)


def _carry_module_state(gm: fx.GraphModule, graph: DependencyGraph, h: Handover) -> None:
    """The user's names, modes and hooks; an intermediate model (``carry_state=False``) only gets the mode."""
    if h.carry_state:
        carry_module_state(gm, graph, h.keep)
    else:
        gm.train(graph.traced.was_training)


REWRITE_PIPELINE = [
    ("fold_constants", fold_constants),  # first: it measures the unsliced network on the probe batches
    ("slice_parameters", _slice_parameters),
    ("apply_rule_rewrites", _apply_rule_rewrites),
    ("remove_branches", drop_branches),  # after the size fixes: the consumers already lost the columns
    ("remove_blocks", bypass_blocks),
    ("verify_shapes", _verify_shapes),
    ("carry_module_state", _carry_module_state),  # after verify: what it puts back is never run by the graph
]


def rewrite(graph: DependencyGraph, keep: np.ndarray | Handover) -> fx.GraphModule:
    """A new, physically smaller GraphModule keeping the units in ``keep`` (a mask, or a :class:`Handover`
    that may also remove structures and fold constants); the traced model is untouched.

    The result owns all its tensors, has each user module's ``training`` flag, every name of the user's
    model and (if ``traced.keep_hooks``) the user's hooks; see ``passes.module_state``.
    """
    handover = keep if isinstance(keep, Handover) else Handover(keep)
    gm = structure_copy(graph.traced.gm)
    done: list[str] = []
    for name, fn in REWRITE_PIPELINE:
        try:
            fn(gm, graph, handover)
        except RewriteError as exc:
            raise RewriteError(f"pass '{name}' failed (after {done or 'nothing'}): {exc}", exc.node) from exc
        except Exception as exc:
            raise RewriteError(f"pass '{name}' failed (after {done or 'nothing'}): "
                               f"{type(exc).__name__}: {exc}") from exc
        done.append(name)
    _own_tensors(gm, graph.traced.gm)
    return gm


def remove_branches(graph: DependencyGraph, branches: Iterable[Branch]) -> fx.GraphModule:
    """A new GraphModule without ``branches`` and with every other channel (``remove_branch`` rules 1-3):
    the pipeline with ``keep = branch_keep(graph, branches)``; raises ``RewriteError`` with the check's
    reason.  An intermediate model: it does not get the user's names back (it is traced again)."""
    branches = list(branches)
    return rewrite(graph, Handover(branch_keep(graph, branches), branches=branches, carry_state=False))


def _own_tensors(gm: fx.GraphModule, source: fx.GraphModule) -> None:
    """Clone tensors still shared with the traced model (and so with the user's model)."""
    shared = {id(t) for t in source.parameters()} | {id(t) for t in source.buffers()}
    cloned: dict[int, object] = {}
    for module in gm.modules():
        for store in (module._parameters, module._buffers):
            for name, t in list(store.items()):
                if t is not None and id(t) in shared:
                    if id(t) not in cloned:
                        new = t.detach().clone()
                        cloned[id(t)] = torch.nn.Parameter(new, t.requires_grad) if isinstance(t, torch.nn.Parameter) else new
                    store[name] = cloned[id(t)]

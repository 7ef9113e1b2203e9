"""Stage 5: rewrite passes — a flat, named pipeline applied to a copy of the traced graph.

``REWRITE_PIPELINE`` runs top to bottom; each pass is ``fn(gm, graph, keep)``.  A failure names the pass
and the passes that ran before it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx

from ..depgraph import DependencyGraph
from ..trace import structure_copy
from .masks import masked_model
from .module_state import MODULE_STATE_KEY, ModuleStateReport, carry_module_state, warn_hooks_not_kept
from .rule_rewrites import apply_rule_rewrites
from .slice_parameters import slice_parameters
from .verify import RewriteError, verify_shapes

__all__ = ["REWRITE_PIPELINE", "rewrite", "masked_model", "RewriteError", "ModuleStateReport", "MODULE_STATE_KEY",
           "warn_hooks_not_kept"]

REWRITE_PIPELINE = [
    ("slice_parameters", slice_parameters),
    ("apply_rule_rewrites", apply_rule_rewrites),
    ("verify_shapes", verify_shapes),
    ("carry_module_state", carry_module_state),  # after verify: what it puts back is never run by the graph
]


def rewrite(graph: DependencyGraph, keep: np.ndarray) -> fx.GraphModule:
    """A new, physically smaller GraphModule keeping the units in ``keep``; the traced model is untouched.

    The result owns all its tensors, has each user module's ``training`` flag, every name of the user's
    model and (if ``traced.keep_hooks``) the user's hooks; see ``passes.module_state``.
    """
    gm = structure_copy(graph.traced.gm)
    done: list[str] = []
    for name, fn in REWRITE_PIPELINE:
        try:
            fn(gm, graph, keep)
        except RewriteError as exc:
            raise RewriteError(f"pass '{name}' failed (after {done or 'nothing'}): {exc}", exc.node) from exc
        except Exception as exc:
            raise RewriteError(f"pass '{name}' failed (after {done or 'nothing'}): "
                               f"{type(exc).__name__}: {exc}") from exc
        done.append(name)
    _own_tensors(gm, graph.traced.gm)
    return gm


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

"""Stage 5: rewrite passes — a flat, named pipeline applied to a copy of the traced graph.

``REWRITE_PIPELINE`` runs top to bottom; each pass is ``fn(gm, graph, keep)``.  A failure names the pass
and the passes that ran before it.
"""
from __future__ import annotations

import copy

import numpy as np
import torch.fx as fx

from ..depgraph import DependencyGraph
from .masks import masked_model
from .rule_rewrites import apply_rule_rewrites
from .slice_parameters import slice_parameters
from .verify import RewriteError, verify_shapes

__all__ = ["REWRITE_PIPELINE", "rewrite", "masked_model", "RewriteError"]

REWRITE_PIPELINE = [
    ("slice_parameters", slice_parameters),
    ("apply_rule_rewrites", apply_rule_rewrites),
    ("verify_shapes", verify_shapes),
]


def rewrite(graph: DependencyGraph, keep: np.ndarray) -> fx.GraphModule:
    """A new, physically smaller GraphModule keeping the units in ``keep``; the traced model is untouched."""
    gm = copy.deepcopy(graph.traced.gm)
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
    gm.train(graph.traced.was_training)
    return gm

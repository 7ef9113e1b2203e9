"""Pass (check only): the rewritten graph is well formed and every value has its planned shape.

Reads: the rewritten GraphModule, example inputs, and the planned shapes.  Rewrites nothing; raises
``RewriteError`` naming the first node whose output shape differs from the plan.
"""
from __future__ import annotations

import numpy as np
import torch.fx as fx

from ..depgraph import DependencyGraph, Dim
from ..trace import NodeRunError, propagate_shapes

__all__ = ["RewriteError", "verify_shapes"]


class RewriteError(RuntimeError):
    """A rewrite produced a graph that does not match its plan; ``node`` names where, if known."""

    def __init__(self, message: str, node: str | None = None):
        super().__init__(message)
        self.node = node


def planned_shape(graph: DependencyGraph, value: str, keep: np.ndarray) -> tuple[int, ...]:
    return tuple(len(graph.kept_indices(Dim(value, a), keep)) if Dim(value, a) in graph.dim_class
                 else graph.shapes[value][a] for a in range(len(graph.shapes[value])))


def verify_shapes(gm: fx.GraphModule, graph: DependencyGraph, keep: np.ndarray) -> None:
    try:
        gm.graph.lint()
        gm.recompile()
        shapes = propagate_shapes(gm, graph.traced.example_inputs)
    except NodeRunError as exc:
        raise RewriteError(f"the pruned graph does not run: {exc}", node=exc.node) from exc
    except Exception as exc:
        raise RewriteError(f"the pruned graph does not run: {type(exc).__name__}: {exc}") from exc
    for node in gm.graph.nodes:
        values = [node.name] if node.name in graph.shapes else \
            [k for k in graph.shapes if k.startswith(node.name + "#")]
        for v in values:
            want = planned_shape(graph, v, keep)
            got = shapes.get(v)
            if got is not None and got != want:
                raise RewriteError(f"node '{node.name}' ({node.op} {node.target}) has shape {got}, "
                                   f"the plan says {want}", node=node.name)

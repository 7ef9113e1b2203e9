"""Dead attention heads: units whose removal leaves the model's output exactly as it is.

A head whose value rows (and bias) are all zero outputs ``softmax(...) @ 0 = 0``; one whose output-projection
columns are all zero adds ``0`` to the residual.  Either way the head is dead, and with whole-head units
(``attention="heads"``, ``depgraph/heads.py``) it is one unit that can go at no cost.  (A head with zero q and k
rows is *not* dead: its softmax is uniform and it adds the mean of v.)

Which zero slice kills a head depends on the role of the layer it sits in, and graphprune does not guess
roles from names.  So the analysis is a check, not a pattern:

1. candidates: units of head groups (``graph.head_splits`` with whole-head units) that have an all-zero
   slice in some weight (a parameter of >= 2 axes; zero biases are common and say nothing alone);
2. each candidate is removed on its own in the masked reference (``passes.masked_model``) and kept as dead
   only if the output on the example inputs stays equal to the dense output (to ``rtol`` of its scale).

Ordinary models have no candidates, so this costs nothing there; ``prune`` scores dead units 0, so the
search removes them before any live unit of their group.
"""
from __future__ import annotations

import numpy as np
import torch

from .depgraph import DependencyGraph, Dim
from .passes import masked_model

__all__ = ["dead_units", "zero_dead_scores"]


def _head_groups(graph: DependencyGraph) -> list:
    heads = [Dim(s.value, s.head_axis) for s in graph.head_splits.values() if s.units == "heads"]
    return [g for g in graph.groups if any(d in g.members for d in heads)]


def _candidates(graph: DependencyGraph) -> list[int]:
    """Units of head groups with an all-zero slice in some weight."""
    params = dict(graph.traced.gm.named_parameters(remove_duplicate=False))
    found: set[int] = set()
    for group in _head_groups(graph):
        for d in group.parameters:
            tensor = params.get(d.value[1:])
            if tensor is None or tensor.ndim < 2:
                continue
            c = graph.dim_class[d]
            units = graph.element_unit[graph.class_offset[c]:graph.class_offset[c] + graph.class_size[c]]
            zero = (tensor.detach().movedim(d.axis, 0).flatten(1) == 0).all(dim=1).numpy()
            for u in np.unique(units[units >= 0]):
                if zero[units == u].all():
                    found.add(int(u))
    return sorted(found)


def _output(model: torch.nn.Module, inputs: tuple) -> torch.Tensor:
    with torch.no_grad():
        y = model(*inputs)
    if isinstance(y, dict):
        y = list(y.values())
    while isinstance(y, (tuple, list)):
        y = y[0]
    return y


def dead_units(graph: DependencyGraph, rtol: float = 1e-6) -> np.ndarray:
    """Boolean mask over units: whole heads whose removal leaves the output on the example inputs unchanged."""
    dead = np.zeros(graph.n_units, dtype=bool)
    candidates = _candidates(graph)
    if not candidates:
        return dead
    inputs = graph.traced.example_inputs
    dense = masked_model(graph, graph.full_keep()).eval()
    want = _output(dense, inputs)
    scale = max(float(want.abs().max()), 1.0)
    for u in candidates:
        keep = graph.full_keep()
        keep[u] = False
        got = _output(masked_model(graph, keep).eval(), inputs)
        dead[u] = float((got - want).abs().max()) <= rtol * scale
    return dead


def zero_dead_scores(graph: DependencyGraph, scores: np.ndarray) -> np.ndarray:
    """``scores`` with every dead unit scored 0 (lowest), so it is the first of its group to go."""
    dead = dead_units(graph)
    if not dead.any():
        return scores
    scores = np.array(scores, dtype=np.float64, copy=True)
    scores[dead] = 0.0
    return scores

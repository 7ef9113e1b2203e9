"""Differentiable cost: the dependency graph's MACs/params as a smooth function of unit keep probabilities.

The graph's cost model (:meth:`DependencyGraph.cost`) is a sum of products of dim-class sizes::

    MACs(keep) = C₀ + Σ_t  c_t · Π_{k ∈ t} s_k(keep),        s_k(keep) = S_k − Σ_u A_{k,u} (1 − keep_u)

with ``S_k`` the dense size of class k and ``A_{k,u}`` the number of elements of unit u in class k.
Replacing the 0/1 ``keep`` by probabilities ``p ∈ [0, 1]`` gives *expected sizes* (sums of gate
probabilities) and a polynomial in ``p`` that equals the exact cost at 0/1 points — the regulariser
HSN drives toward the budget, and the per-epoch MACs curve of every learner.
"""
from __future__ import annotations

import numpy as np
import torch

from ..depgraph import DependencyGraph

__all__ = ["CostModel"]


class CostModel:
    """``cost(p)`` for ``p`` of shape ``(n_units,)``; ``ratio(p) = cost(p) / cost(1)``."""

    def __init__(self, graph: DependencyGraph, metric: str = "macs"):
        self.terms = graph.cost_terms(metric)  # the graph's own polynomial (depgraph/cost_model.py)
        counts = graph._unit_counts.tocoo()
        self.counts = torch.sparse_coo_tensor(np.vstack([counts.row, counts.col]), counts.data.astype(np.float64),
                                              counts.shape, check_invariants=True).coalesce()
        self.class_size = torch.as_tensor(graph.class_size, dtype=torch.float64)
        self.dense = float(self(torch.ones(graph.n_units, dtype=torch.float64)))

    def sizes(self, p: torch.Tensor) -> torch.Tensor:
        """Expected size of every dim class."""
        dropped = torch.sparse.mm(self.counts, (1 - p.to(torch.float64)).unsqueeze(1)).squeeze(1)
        return self.class_size - dropped

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        return self.terms.torch(self.sizes(p))

    def ratio(self, p: torch.Tensor) -> torch.Tensor:
        return self(p) / self.dense

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
        if metric not in ("macs", "params"):
            raise ValueError(f"metric must be 'macs' or 'params', got {metric!r}")
        # NOTE: reads the graph's cost terms (private to depgraph) without changing them; the test
        # holds this model to DependencyGraph.cost at 0/1 points.
        counts = graph._unit_counts.tocoo()
        self.counts = torch.sparse_coo_tensor(np.vstack([counts.row, counts.col]), counts.data.astype(np.float64),
                                              counts.shape, check_invariants=True).coalesce()
        self.class_size = torch.as_tensor(graph.class_size, dtype=torch.float64)
        terms = graph._mac_terms if metric == "macs" else [(k, 1.0, idx) for k, idx in graph._param_terms]
        width = max((len(idx) for _, _, idx in terms), default=1)
        pad = len(graph.class_size)  # index of a constant-1 slot
        index = [[pad if i < 0 else i for i in idx] + [pad] * (width - len(idx)) for _, _, idx in terms]
        self.index = torch.as_tensor(index, dtype=torch.long).reshape(len(terms), width)
        self.coef = torch.as_tensor([float(c) for _, c, _ in terms], dtype=torch.float64)
        self.constant = float(graph.unmodeled_macs) if metric == "macs" else 0.0
        self.dense = float(self(torch.ones(graph.n_units, dtype=torch.float64)))

    def sizes(self, p: torch.Tensor) -> torch.Tensor:
        """Expected size of every dim class."""
        dropped = torch.sparse.mm(self.counts, (1 - p.to(torch.float64)).unsqueeze(1)).squeeze(1)
        return self.class_size - dropped

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        sizes = torch.cat([self.sizes(p), torch.ones(1, dtype=torch.float64)])
        return self.constant + (self.coef * sizes[self.index].prod(dim=1)).sum()

    def ratio(self, p: torch.Tensor) -> torch.Tensor:
        return self(p) / self.dense

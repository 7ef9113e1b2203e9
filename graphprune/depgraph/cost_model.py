"""The dependency graph's cost polynomial, read once, evaluated with numpy or (differentiably) with torch.

MACs and params of a pruned model are ``C + Σ_t coef_t · Π_{c ∈ t} size_c``: one term per op (MACs) or
parameter tensor (params), ``size_c`` the surviving size of dim class ``c`` and ``C`` the measured cost of
ops without a rule (``unmodeled_macs``).  :class:`CostTerms` extracts the terms of one metric from the graph
and evaluates them on class sizes:

* :meth:`CostTerms.numpy` — used by ``DependencyGraph.cost`` and the searches' ``search.cost.FastCost``;
  terms are grouped by arity so one evaluation is a few vectorised products (searches call it thousands
  of times);
* :meth:`CostTerms.torch` — the same polynomial on real-valued *expected* sizes, differentiable, used by
  the learners' ``learners.cost.CostModel`` (one padded index matrix, so autograd sees one gather).

A class index of -1 (a parameter dim without a class) reads a constant 1.  ``tests/depgraph/test_cost_model.py``
holds every evaluation equal to the others.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["CostTerms", "METRICS"]

METRICS = ("macs", "params")


class CostTerms:
    """One metric's terms: ``constant``, ``by_arity`` [(coefs, class-index matrix)], and the same terms as one
    ``coef`` vector with an ``index`` matrix padded with the size-1 slot ``n_classes``.

    Args:
        mac_terms / param_terms: the graph's ``_mac_terms`` ((node, coef, class indices)) and ``_param_terms``
            ((parameter, class indices)).
        n_classes: number of dim classes (the size-1 slot's index).
        unmodeled_macs: the constant of the MACs polynomial.
        metric: ``"macs"`` or ``"params"``.
    """

    def __init__(self, mac_terms: list, param_terms: list, n_classes: int, unmodeled_macs: float, metric: str):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        rows = [(float(coef), idx) for _, coef, idx in mac_terms] if metric == "macs" \
            else [(1.0, idx) for _, idx in param_terms]
        self.metric, self.n_classes = metric, n_classes
        self.constant = float(unmodeled_macs) if metric == "macs" else 0.0
        pad = n_classes
        rows = [(coef, [pad if i < 0 else int(i) for i in idx]) for coef, idx in rows]
        by_arity: dict[int, tuple[list, list]] = {}
        for coef, idx in rows:
            coefs, idxs = by_arity.setdefault(len(idx), ([], []))
            coefs.append(coef)
            idxs.append(idx)
        self.by_arity = [(np.array(c, dtype=np.float64), np.array(i, dtype=np.int64).reshape(len(c), -1))
                         for c, i in by_arity.values()]
        width = max((len(idx) for _, idx in rows), default=1)
        self.coef = np.array([coef for coef, _ in rows], dtype=np.float64)
        self.index = np.full((len(rows), width), pad, dtype=np.int64)
        for r, (_, idx) in enumerate(rows):
            self.index[r, :len(idx)] = idx

    @classmethod
    def of(cls, graph, metric: str) -> "CostTerms":
        """The terms of ``graph`` (a ``DependencyGraph``) for ``metric``."""
        return cls(graph._mac_terms, graph._param_terms, len(graph.class_size), graph.unmodeled_macs, metric)

    def numpy(self, sizes: np.ndarray) -> float:
        """The cost at integer (or real) class ``sizes``."""
        padded = np.append(np.asarray(sizes, dtype=np.float64), 1.0)
        return self.constant + float(sum((c * np.prod(padded[i], axis=1)).sum() for c, i in self.by_arity))

    def torch(self, sizes: "torch.Tensor") -> "torch.Tensor":
        """The cost at (expected, real-valued) class ``sizes``, float64 and differentiable in them."""
        import torch

        padded = torch.cat([sizes.to(torch.float64), torch.ones(1, dtype=torch.float64, device=sizes.device)])
        coef = torch.as_tensor(self.coef, device=sizes.device)
        index = torch.as_tensor(self.index, device=sizes.device)
        return self.constant + (coef * padded[index].prod(dim=1)).sum()

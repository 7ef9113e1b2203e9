"""What every search strategy receives and returns.

A strategy is ``fn(ctx: SearchContext, **options) -> SearchResult``.  The context bundles the dependency
graph, unit scores (they order units *within* a group: a group keeping k units keeps its top-k), the
budget, the allocation floors, and the candidate evaluator (``evaluate.CandidateEvaluator``) for
strategies that score candidates.  Every strategy ends with a keep mask that meets the budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..budget import Budget
from ..depgraph import DependencyGraph
from ..evaluate import CandidateEvaluator
from .allocate import Allocation, AllocationConfig, _floors, _keep_from_counts, _round, allocate_family, \
    ratio_family

__all__ = ["SearchContext", "SearchResult", "FastCost"]


class FastCost:
    """``graph.cost(keep)`` vectorised: the same polynomial in class sizes, terms grouped by arity.

    NOTE: searches evaluate the cost thousands of times (the CACP bounds bisect at every step); this
    reads the dependency graph's cost terms once and computes ``Σ_t coef_t · Π_{c ∈ t} size_c`` with
    numpy.  Tests hold it equal to ``graph.cost``.
    """

    def __init__(self, graph: DependencyGraph, metric: str):
        terms = [(coef, idx) for _, coef, idx in graph._mac_terms] if metric == "macs" \
            else [(1.0, idx) for _, idx in graph._param_terms]
        self.constant = graph.unmodeled_macs if metric == "macs" else 0.0
        by_arity: dict[int, tuple[list, list]] = {}
        for coef, idx in terms:
            coefs, idxs = by_arity.setdefault(len(idx), ([], []))
            coefs.append(coef)
            idxs.append(idx)
        self.terms = [(np.array(c, dtype=np.float64), np.array(i, dtype=np.int64).reshape(len(c), -1))
                      for c, i in by_arity.values()]
        self.graph = graph
        self.dense = self.of(graph.full_keep())

    def of(self, keep: np.ndarray) -> float:
        sizes = self.graph.class_sizes(keep).astype(np.float64)
        return self.constant + float(sum((c * np.prod(sizes[i], axis=1)).sum() for c, i in self.terms))

    def ratio(self, keep: np.ndarray) -> float:
        return self.of(keep) / self.dense if self.dense else 1.0


@dataclass
class SearchResult:
    """A strategy's answer.

    Attributes:
        keep: unit keep mask meeting the budget.
        ratio: achieved cost ratio (``budget.metric``).
        score: evaluator score of ``keep`` (None when the strategy never evaluated it).
        evaluations: candidate evaluations run; seconds: wall time of the search.
        history: per evaluation (or episode), the score seen — for curves.
        info: strategy-specific details (e.g. how far the final projection moved the plan).
    """

    keep: np.ndarray
    ratio: float
    score: float | None = None
    evaluations: int = 0
    seconds: float = 0.0
    history: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchContext:
    """Inputs shared by all strategies (see module docstring)."""

    graph: DependencyGraph
    scores: np.ndarray
    budget: Budget
    cfg: AllocationConfig = AllocationConfig()
    evaluator: CandidateEvaluator | None = None
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        self.n, self.lo = _floors(self.graph, self.cfg)
        self.order = [np.argsort(-self.scores[g.units], kind="stable") for g in self.graph.groups]
        self.fast_cost = FastCost(self.graph, self.budget.metric)
        self.ratio_of = self.fast_cost.ratio

    def need_evaluator(self, strategy: str) -> CandidateEvaluator:
        if self.evaluator is None:
            raise ValueError(f"strategy {strategy!r} scores candidates: pass eval_fn=... (model -> float, higher "
                             "is better) and calib_data=... (batches for BatchNorm recalibration)")
        return self.evaluator

    def round(self, counts: np.ndarray) -> np.ndarray:
        """Counts rounded to ``round_to`` and clipped to the floors and group sizes."""
        return _round(np.asarray(counts), self.n, self.lo, self.cfg.round_to)

    def keep_from_counts(self, counts: np.ndarray) -> np.ndarray:
        """Top-k units of each group (by ``scores``) for rounded ``counts``; no tensor dim left empty."""
        return _keep_from_counts(self.graph, self.order, self.round(counts))

    def counts_of(self, keep: np.ndarray) -> np.ndarray:
        return np.array([int(keep[g.units].sum()) for g in self.graph.groups])

    def project(self, ratios: np.ndarray) -> Allocation:
        """Exact projection of per-group keep ratios onto the budget (``allocate.ratio_family`` + fill)."""
        return allocate_family(self.graph, self.scores, self.budget, ratio_family(ratios), self.cfg)

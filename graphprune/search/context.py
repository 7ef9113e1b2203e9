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
from .allocate import Allocation, AllocationConfig, _floors, _keep_from_counts, _ratio_fn, _round, \
    allocate_family, ratio_family

__all__ = ["SearchContext", "SearchResult"]


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
        self.ratio_of = _ratio_fn(self.graph, self.budget.metric)

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

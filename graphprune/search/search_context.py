"""What every search strategy receives and returns.

A strategy is ``fn(ctx: SearchContext, **options) -> SearchResult``.  The context bundles the dependency
graph, unit scores (they order units *within* a group: a group keeping k units keeps its top-k), the
budget, the allocation floors, and the candidate evaluator (``evaluate.CandidateEvaluator``) for
strategies that score candidates.  Every strategy ends with a keep mask that meets the budget.

``ctx.cost`` is the budget's cost (``cost.budget_cost``: MACs, params, predicted latency from
``cfg.latency``, or several caps); ``ctx.ratio_of`` is its ``.ratio``, and ``ctx.budget`` has any
``Budget.ms`` part already turned into a fraction of the predicted dense time.  ``ctx.menus`` are the
widths each group may keep (``menus.py``).
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
from .cost import FastCost, budget_cost, resolve_ms

__all__ = ["SearchContext", "SearchResult", "FastCost"]


@dataclass
class SearchResult:
    """A strategy's answer.

    Attributes:
        keep: unit keep mask meeting the budget.
        ratio: achieved cost ratio (the budget's cost, ``ctx.ratio_of``).
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
    # NOTE: the smallest budget the search will face (a budget-conditioned policy serves a range); the width
    # menus must reach it, so the coarse heuristic menus give way to finer ones below what they can reach
    lowest_budget: Budget | None = None

    def __post_init__(self) -> None:
        self.n, self.lo = _floors(self.graph, self.cfg)
        self.order = [np.argsort(-self.scores[g.units], kind="stable") for g in self.graph.groups]
        self.budget = resolve_ms(self.budget, self.cfg.latency)
        self.cost = budget_cost(self.graph, self.budget, self.cfg.latency)
        self.fast_cost = self.cost  # NOTE: the name searches used before latency budgets
        self.ratio_of = self.cost.ratio
        self.menus = self.cfg.menus(self.graph, self.lowest_budget or self.budget)

    def need_evaluator(self, strategy: str) -> CandidateEvaluator:
        if self.evaluator is None:
            raise ValueError(f"strategy {strategy!r} scores candidates: pass eval_fn=... (model -> float, higher "
                             "is better) and calib_data=... (batches for BatchNorm recalibration)")
        return self.evaluator

    def round(self, counts: np.ndarray) -> np.ndarray:
        """Counts clipped to the floors and group sizes, rounded up to each group's next menu width."""
        return _round(np.asarray(counts), self.lo, self.menus)

    def allowed(self, gi: int) -> np.ndarray:
        """The widths group ``gi`` may keep (its menu from its floor up), ascending."""
        return self.menus.allowed(gi, int(self.lo[gi]))

    def keep_from_counts(self, counts: np.ndarray) -> np.ndarray:
        """Top-k units of each group (by ``scores``) for rounded ``counts``; no tensor dim left empty."""
        return _keep_from_counts(self.graph, self.order, self.round(counts))

    def counts_of(self, keep: np.ndarray) -> np.ndarray:
        return np.array([int(keep[g.units].sum()) for g in self.graph.groups])

    def project(self, ratios: np.ndarray) -> Allocation:
        """Exact projection of per-group keep ratios onto the budget (``allocate.ratio_family`` + fill)."""
        return allocate_family(self.graph, self.scores, self.budget, ratio_family(ratios), self.cfg)

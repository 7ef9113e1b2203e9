"""Sensitivity analysis + threshold bisection.

1. **Profile** (budget-independent, ``sensitivity_profile``): for every group g and keep level r in
   ``levels``, prune g alone to its top ``ceil(r·n_g)`` units and record the score drop
   ``d_g(r) = s(dense) − s(g at r)`` (masked model, BatchNorm recalibrated).  That is
   ``|groups| × |levels|`` evaluations, done once for every budget.
2. **Curves**: ``d_g`` is made monotone (keeping more never hurts: ``d'_g(r) = max_{r' >= r} d_g(r')``,
   ``d'_g(1) = 0``) and interpolated linearly in r; below the lowest level (unmeasured) it rises to
   twice the largest measured drop at r = 0, so the tolerance sweep can reach every group's floor.
3. **Threshold**: for a tolerance τ each group keeps the smallest ratio whose drop is at most τ,
   ``r_g(τ) = min{r : d'_g(r) <= τ}``.  Keep counts are monotone in τ, so with ``τ(t) = τ_max·(1 − t)``
   the allocator's bisection (``allocate_family``) finds the smallest tolerance that fits the budget,
   then its greedy fill spends what is left.

One-at-a-time drops ignore interactions between groups (the classic limitation); they are cheap and,
measured after BN recalibration, a strong baseline for layer-wise allocation.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .allocate import allocate_family
from .search_context import SearchContext, SearchResult

__all__ = ["SensitivityConfig", "sensitivity_profile", "sensitivity_search"]

GRID = 201  # points per curve on which r_g(τ) is read


@dataclass(frozen=True)
class SensitivityConfig:
    """Keep levels at which each group is probed (the lowest is the least any group keeps)."""

    levels: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75)


def sensitivity_profile(ctx: SearchContext, config: SensitivityConfig = SensitivityConfig()) -> np.ndarray:
    """Score drops, shape (groups, levels); ``ctx.evaluator`` runs ``groups × levels + 1`` times."""
    evaluator = ctx.need_evaluator("sensitivity")
    dense = evaluator(ctx.graph.full_keep())
    candidates = []
    for gi in range(len(ctx.graph.groups)):
        for r in config.levels:
            counts = ctx.n.copy()
            counts[gi] = int(np.ceil(r * ctx.n[gi]))
            candidates.append(ctx.keep_from_counts(counts))
    bar = tqdm(total=len(candidates), desc="sensitivity", disable=not ctx.progress, leave=False)
    scores = evaluator.evaluate_many(candidates, bar)  # NOTE: one call: distributed.py can split it
    bar.close()
    return dense - np.array(scores).reshape(len(ctx.graph.groups), len(config.levels))


def _curves(drops: np.ndarray, levels: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Monotone, interpolated drop curves on a grid of ratios: (grid (R,), curves (groups, R))."""
    r = np.array([0.0] + list(levels) + [1.0])
    grid = np.linspace(0.0, 1.0, GRID)
    worst = 2.0 * max(float(drops.max()), 0.0) + 1e-6  # NOTE: below the lowest level is unmeasured: assume worst
    curves = []
    for d in drops:
        d = np.concatenate([[worst], d, [0.0]])
        d = np.maximum.accumulate(d[::-1])[::-1]  # d'(r) = max over r' >= r
        curves.append(np.interp(grid, r, d))
    return grid, np.array(curves)


def _threshold_family(grid: np.ndarray, curves: np.ndarray):
    tau_max = float(curves.max()) + 1e-9

    def make(n: np.ndarray, scores: np.ndarray, graph) -> callable:
        def counts(t: float) -> np.ndarray:
            tau = tau_max * (1.0 - t)
            ok = curves <= tau  # monotone in r: True from some index on
            first = np.where(ok.any(1), ok.argmax(1), len(grid) - 1)
            ratio = np.where(t >= 1.0, 1.0, grid[first])
            return np.ceil(ratio * n - 1e-9).astype(int)
        return counts
    return make


def sensitivity_search(ctx: SearchContext, config: SensitivityConfig = SensitivityConfig(),
                       drops: np.ndarray | None = None) -> SearchResult:
    """Keep mask for ``ctx.budget`` from a (given or freshly measured) sensitivity profile."""
    start = time.perf_counter()
    calls = ctx.evaluator.calls if ctx.evaluator is not None else 0
    if drops is None:
        drops = sensitivity_profile(ctx, config)
    grid, curves = _curves(drops, config.levels)
    alloc = allocate_family(ctx.graph, ctx.scores, ctx.budget, _threshold_family(grid, curves), ctx.cfg)
    evaluations = (ctx.evaluator.calls - calls) if ctx.evaluator is not None else 0
    return SearchResult(alloc.keep, alloc.ratio, None, evaluations, time.perf_counter() - start,
                        info={"drops": drops.tolist(), "levels": list(config.levels)})

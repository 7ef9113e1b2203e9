"""Stage 4 — allocation: how many units each group keeps so that the budget is met.

Both built-in strategies are a monotone family of per-group keep counts ``k(t)``, t in [0, 1]:

* ``uniform``: every group keeps ``ceil(t * n_g)`` units;
* ``global``: units above a threshold on per-group-normalised importance are kept, t = fraction kept;
* ``global_raw``: the same threshold on raw scores (for criteria already comparable across groups, such
  as cost-normalised Group Fisher).

Counts are clipped to ``[min_units, n_g]`` and rounded up to the group's next width on its menu (``menus.py``:
multiples of ``round_to``, or with ``round_to="auto"`` the latency model's step ends, less the widths that free
MACs but little time (``time_menus.py``), or a heuristic); each group keeps its top-k units by importance, so
keep sets are nested and cost is monotone in t. Bisection finds the largest t whose cost fits the budget; a
greedy fill then steps groups to their next menu width while they still fit, so the achieved ratio lands just
below the budget.

With ``round_to="auto"``, a threshold strategy and a MACs or params budget, the filled counts are then shaped for
time (``time_shaping.py``): budget moves from groups whose width costs much time per MAC (activation-heavy early
layers, depthwise stages) to the others while the predicted time falls, within bounds on importance.

The cost is the budget's (``cost.budget_cost``): MACs, params, predicted latency (``cfg.latency``, a
``graphprune.latency.LatencyModel``), or several caps at once.

``allocate_family`` exposes that machinery for any monotone family (the searches in this package use
it to project their per-group keep ratios onto the budget: ``ratio_family``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..budget import Budget, BudgetError
from ..depgraph import DependencyGraph
from ..depgraph.conv_groups import unit_channels
from ..importance import normalize_per_group
from .cost import BudgetCost, TimeProxyCost, budget_cost, resolve_ms
from .menus import WidthMenus, width_menus
from .time_menus import time_effective_menus
from .time_shaping import shape_for_time

__all__ = ["AllocationConfig", "Allocation", "allocate", "allocate_family", "ratio_family", "STRATEGIES"]


PRECISION = 0.02  # a budget is met from below to within this (points of the ratio) when finer menus allow it


@dataclass(frozen=True)
class AllocationConfig:
    """Knobs shared by every strategy.

    Attributes:
        round_to: kept unit counts are multiples of this int (8 suits most vector hardware) unless the
            group is kept whole; ``"auto"``: widths from a menu per group (``menus.py``: the latency
            model's step ends when there is one, else a heuristic); 1: exact widths.
        min_units: every group keeps at least this many units (and at least 1).
        max_prune_ratio: no group loses more than this fraction of its units.
        ignored: group names that keep all units.
        latency: a ``graphprune.latency.LatencyModel`` for latency budgets and latency menus (or None).
        finest_menus: use the last of the menus' fallbacks from the start (the latency table's step ends, with
            ``round_to="auto"``): the latency re-plan loop asks for it when the preferred menus have a gap around
            the goal (``search/latency_budget.py``).
        time_shaping: with ``round_to="auto"``, a threshold strategy and a MACs or params budget, move budget
            toward layers that are fast per MAC while the time falls (``time_shaping.py``).
    """

    round_to: int | str = "auto"
    min_units: int = 1
    max_prune_ratio: float = 0.95
    ignored: frozenset[str] = field(default_factory=frozenset)
    latency: Any = field(default=None, compare=False)
    finest_menus: bool = False
    time_shaping: bool = True

    def menus(self, graph: DependencyGraph, budget: Budget | None = None) -> WidthMenus:
        """The width menus for ``graph``; with ``budget``, the finer fallback menus when the preferred (coarse)
        ones cannot reach it even at every group's floor."""
        menus = width_menus(np.array([g.n_units for g in graph.groups], dtype=np.int64), self.round_to,
                            self.latency, unit_channels(graph))
        if self.latency is not None and self.round_to == "auto" and graph.groups:
            menus = time_effective_menus(graph, menus, self.latency)
        while self.finest_menus and menus.fallback is not None:
            menus = menus.fallback
        if budget is not None and menus.fallback is not None and graph.groups:
            budget = resolve_ms(budget, self.latency)
            _, lo = _floors(graph, self)
            order = [np.arange(g.n_units) for g in graph.groups]
            cost = budget_cost(graph, budget, self.latency)
            # NOTE: each fallback is finer than the menus before it; the first whose floor fits is used
            while menus.fallback is not None and \
                    cost.ratio(_keep_from_counts(graph, order, _round(lo, lo, menus))) > budget.ratio:
                menus = menus.fallback
        return menus


@dataclass
class Allocation:
    """A keep mask, its cost ratio (the budget's cost), bisection steps, and the width menus' policy."""

    keep: np.ndarray
    ratio: float
    iterations: int
    width_policy: str = ""


def _floors(graph: DependencyGraph, cfg: AllocationConfig) -> tuple[np.ndarray, np.ndarray]:
    n = np.array([g.n_units for g in graph.groups])
    lo = np.maximum(np.minimum(n, max(cfg.min_units, 1)), np.ceil(n * (1 - cfg.max_prune_ratio)).astype(int))
    ignored = np.array([g.name in cfg.ignored for g in graph.groups], dtype=bool)
    lo = np.where(ignored, n, lo)
    return n, lo


def _round(counts: np.ndarray, lo: np.ndarray, menus: WidthMenus) -> np.ndarray:
    # The floor is rounded too: a floor of 1 would otherwise turn a group rounded to 0 into width 1.
    return menus.ceil(counts, lo)


def _keep_from_counts(graph: DependencyGraph, order: list[np.ndarray], counts: np.ndarray) -> np.ndarray:
    keep = np.zeros(graph.n_units, dtype=bool)
    for g, ranked, k in zip(graph.groups, order, counts):
        keep[g.first_unit + ranked[:k]] = True
    return _repair_empty(graph, keep, order)


def _repair_empty(graph: DependencyGraph, keep: np.ndarray, order: list[np.ndarray]) -> np.ndarray:
    """Keep one more unit wherever a tensor dim would otherwise lose every element."""
    sizes = graph.class_sizes(keep)
    empty = np.nonzero((sizes == 0) & (graph.class_size > 0))[0]
    if len(empty) == 0:
        return keep
    counts = graph._unit_counts.tocsr()
    rank = np.empty(graph.n_units, dtype=np.int64)
    for g, ranked in zip(graph.groups, order):
        rank[g.first_unit + ranked] = np.arange(len(ranked))
    keep = keep.copy()
    for c in empty:
        units = counts.indices[counts.indptr[c]:counts.indptr[c + 1]]
        if len(units) and not keep[units].any():
            keep[units[np.argmin(rank[units])]] = True
    return keep


def _uniform_counts(n: np.ndarray, scores: np.ndarray, graph: DependencyGraph) -> Callable:
    return lambda t: np.ceil(t * n).astype(int)


def _threshold_counts(norm: np.ndarray, n: np.ndarray, graph: DependencyGraph) -> Callable:
    ranked = np.sort(norm)[::-1]

    def counts(t: float) -> np.ndarray:
        k = int(round(t * len(ranked)))
        if k <= 0:
            return np.zeros(len(n), dtype=int)
        threshold = ranked[min(k, len(ranked)) - 1]
        return np.array([int((norm[g.units] >= threshold).sum()) for g in graph.groups])
    return counts


def _global_counts(n: np.ndarray, scores: np.ndarray, graph: DependencyGraph) -> Callable:
    return _threshold_counts(normalize_per_group(graph, scores), n, graph)


def _global_raw_counts(n: np.ndarray, scores: np.ndarray, graph: DependencyGraph) -> Callable:
    return _threshold_counts(np.asarray(scores, dtype=np.float64), n, graph)


def ratio_family(ratios: np.ndarray) -> Callable[[np.ndarray, np.ndarray, DependencyGraph], Callable]:
    """The monotone family through per-group keep ratios ρ: ``k_g(t) = ceil(n_g·min(1, ρ_g·t/(1-t)))``.

    t = 0 keeps the floors, t = 1/2 keeps ``ρ`` exactly, t -> 1 keeps everything; bisection on t is the
    exact projection of ``ρ`` onto the budget that preserves the ratios' proportions (up to the cap 1).
    """
    rho = np.clip(np.asarray(ratios, dtype=np.float64), 1e-6, 1.0)

    def make(n: np.ndarray, scores: np.ndarray, graph: DependencyGraph) -> Callable:
        def counts(t: float) -> np.ndarray:
            scale = t / (1.0 - t) if t < 1.0 else np.inf
            return np.ceil(n * np.minimum(1.0, rho * scale) - 1e-9).astype(int)
        return counts
    return make


def _learned_counts(n: np.ndarray, scores: np.ndarray, graph: DependencyGraph) -> Callable:
    """``global_raw`` for the learners' projection, under its own name: a learned mask is projected as is (no time
    shaping moves it)."""
    return _global_raw_counts(n, scores, graph)


# NOTE: the families by name, for ``allocate(strategy=name)``; ``graphprune.strategies.REGISTRY`` is the
# table of strategies (kind, inputs, description) and has one row per name here.  ``learned`` is
# ``global_raw`` under the name the learners' projection uses (``learners/projection.py``).
STRATEGIES: dict[str, Callable] = {"uniform": _uniform_counts, "global": _global_counts,
                                   "global_raw": _global_raw_counts, "learned": _learned_counts}


def _fill(graph, order, counts, n, menus, ratio_of, budget, scores) -> np.ndarray:
    """Greedily step groups (most important first) to their next menu width while the budget holds."""
    mean_score = np.array([scores[g.units].mean() if g.n_units else 0 for g in graph.groups])
    for gi in np.argsort(-mean_score):
        while counts[gi] < n[gi]:
            trial = counts.copy()
            trial[gi] = menus.next_up(gi, trial[gi])
            if ratio_of(_keep_from_counts(graph, order, trial)) > budget.ratio:
                break
            counts = trial
    return counts


def allocate(graph: DependencyGraph, scores: np.ndarray, budget: Budget, strategy: str = "global",
             cfg: AllocationConfig = AllocationConfig(), fill: bool = True) -> Allocation:
    """Keep mask over units meeting ``budget`` (see module docstring)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; built-in: {sorted(STRATEGIES)}")
    return allocate_family(graph, scores, budget, STRATEGIES[strategy], cfg, fill)


def allocate_family(graph: DependencyGraph, scores: np.ndarray, budget: Budget, family: Callable,
                    cfg: AllocationConfig = AllocationConfig(), fill: bool = True) -> Allocation:
    """Bisection + fill over ``family(n, scores, graph) -> counts(t)``, monotone in t (module docstring)."""
    if not graph.groups:
        raise BudgetError("nothing to prune: no prunable channel groups (see inspect() for frozen reasons)")
    n, lo = _floors(graph, cfg)
    order = [np.argsort(-scores[g.units], kind="stable") for g in graph.groups]
    counts_of = family(n, scores, graph)
    budget = resolve_ms(budget, cfg.latency)
    cost, menus = budget_cost(graph, budget, cfg.latency), cfg.menus(graph, budget)
    ratio_of = cost.ratio
    keep_at = lambda t: _keep_from_counts(graph, order, _round(counts_of(t), lo, menus))
    floor_ratio = ratio_of(keep_at(0.0))
    if floor_ratio > budget.ratio:
        raise BudgetError(_floor_message(budget, cost, floor_ratio, menus, cfg))
    lo_t, hi_t, it = 0.0, 1.0, 0
    if ratio_of(keep_at(1.0)) <= budget.ratio:
        lo_t = 1.0
    while hi_t - lo_t > 1e-5 and it < 60:
        mid = (lo_t + hi_t) / 2
        lo_t, hi_t = (mid, hi_t) if ratio_of(keep_at(mid)) <= budget.ratio else (lo_t, mid)
        it += 1
    counts = _round(counts_of(lo_t), lo, menus)
    if fill:
        counts = _fill(graph, order, counts, n, menus, ratio_of, budget, scores)
        if menus.fallback is not None and \
                ratio_of(_keep_from_counts(graph, order, counts)) < budget.ratio - PRECISION:
            # NOTE: coarse steps left more than PRECISION of the budget unused: finer steps take it up
            counts = _fill(graph, order, counts, n, menus.fallback, ratio_of, budget, scores)
        if _shapes_time(family, cfg, budget):
            counts = _shaped(graph, order, counts, n, lo, menus, cost, budget, scores, cfg)
    keep = _keep_from_counts(graph, order, counts)
    return Allocation(keep=keep, ratio=ratio_of(keep), iterations=it, width_policy=menus.policy)


def _shapes_time(family: Callable, cfg: AllocationConfig, budget: Budget) -> bool:
    """Time shaping applies to the threshold strategies at ``round_to="auto"`` under a MACs / params budget (a
    latency budget already prices time; ``uniform`` and the searches' projections keep their proportions)."""
    return cfg.time_shaping and cfg.round_to == "auto" and not budget.needs_latency and \
        family in (_global_counts, _global_raw_counts)


def _shaped(graph, order, counts, n, lo, menus, cost, budget, scores, cfg) -> np.ndarray:
    """``counts`` after ``time_shaping.shape_for_time`` on the latency model's prediction (else the proxy)."""
    keep_of = lambda c: _keep_from_counts(graph, order, c)  # noqa: E731
    time_of = cfg.latency.predict_ms if cfg.latency is not None else TimeProxyCost(graph).of
    norm = normalize_per_group(graph, scores)

    def refill(trial: np.ndarray, skip: int) -> np.ndarray:
        cap = n.copy()
        cap[skip] = trial[skip]  # NOTE: the narrowed group does not grow back
        out = _fill(graph, order, trial, cap, menus, cost.ratio, budget, scores)
        if menus.fallback is not None and cost.ratio(keep_of(out)) < budget.ratio - PRECISION:
            out = _fill(graph, order, out, cap, menus.fallback, cost.ratio, budget, scores)
        return out
    return shape_for_time(counts, lo, menus, keep_of, time_of, cost.of, lambda k: float(norm[k].sum()), refill,
                          [g.name for g in graph.groups], cost.dense).counts


def _floor_message(budget: Budget, cost: BudgetCost, floor_ratio: float, menus: WidthMenus,
                   cfg: AllocationConfig) -> str:
    rounding = f", widths rounded up to {menus.policy} (round_to={cfg.round_to!r})" \
        if menus.policy != "exact widths" else ""
    relax = "raise the budget or relax the floors (min_channels, max_prune_ratio, ignored layers)"
    if cfg.round_to != 1:
        relax += " or pass round_to=1"
    return (f"budget {cost.describe(budget.ratio)} is below what pruning can reach here: {cost.describe(floor_ratio)} "
            f"(frozen layers, min_units and max_prune_ratio floors{rounding}); {relax}")

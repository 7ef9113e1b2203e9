"""CACP budget bounds: every action of the agent keeps the episode's plan within its budget.

The agent visits the groups l = 1..L in dataflow order and picks each group's keep count k_l.  In CACP
(conditional automated channel pruning) the pruning ratio α_l of step l is bounded below so that the
target stays reachable whatever comes after:

    α_l = max(f(S_l, β), D_l / C_l),    D_l = β_cut·C_all − α_max·C_rest − C_reduced,

with β_cut = 1 − β the share of cost to cut, C_rest the cost of the groups after l (of which at most
α_max can be cut), C_reduced what earlier steps already cut and C_l the cost group l controls.  That
formula assumes a separable cost.  Here cost is the dependency graph's polynomial (a conv's MACs are
in·out: two groups multiply), so the bound is computed *exactly*, by bisection on k in the allowed
counts (multiples of ``round_to``, floors of ``AllocationConfig``), with the actual cost model:

    k_hi(l) = max{k : cost(k_1..k_{l-1}, k, floors after l) <= β·C_all}     (CACP's lower bound on α_l)

Invariant: cost(prefix, floors) <= β·C_all holds before every step (initially: the budget is above the
floor cost, else ``BudgetError``), and choosing k_l <= k_hi(l) preserves it; after the last step the
plan itself costs <= β·C_all.  Every sampled plan meets its budget by construction — no penalty, no
rejection.  For separable costs k_hi is exactly CACP's D_l/C_l bound.

We add the symmetric bound (not in CACP) so that episodes also *use* their budget:

    k_lo(l) = min{k : cost(k_1..k_{l-1}, k, all after l kept) >= β·C_all}, clipped to <= k_hi(l),

which forces the last step to the largest count that fits: achieved ≈ β within one step of the last
group.  The agent's desired count is clipped into [k_lo, k_hi] (the environment's job; the log-prob
of the desired action is what the policy gradient uses).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..budget import BudgetError
from .search_context import SearchContext

__all__ = ["BoundedEpisode"]


@dataclass
class BoundedEpisode:
    """One episode's state: counts decided so far; ``bounds(l)`` and ``step(l, desired)`` as above."""

    ctx: SearchContext
    budget: float
    counts: np.ndarray = field(init=False)
    clipped: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.counts = self.ctx.n.copy()
        self.allowed = [self.ctx.allowed(gi) for gi in range(len(self.ctx.n))]
        floor = self._ratio(0, None, self.ctx.lo)
        if floor > self.budget + 1e-12:
            raise BudgetError(f"budget {self.budget:.3f} is below what pruning can reach here: {floor:.3f}")

    def _ratio(self, l: int, k: int | None, rest: np.ndarray) -> float:
        counts = np.concatenate([self.counts[:l], [k] if k is not None else [], rest[l + (k is not None):]])
        return self.ctx.ratio_of(self.ctx.keep_from_counts(counts.astype(int)))

    def _largest(self, l: int, ok) -> int:
        """Largest allowed count of group l with ``ok(k)`` (ok is monotone: True then False)."""
        ks = self.allowed[l]
        lo, hi = 0, len(ks) - 1
        if not ok(ks[lo]):
            return int(ks[lo])
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if ok(ks[mid]) else (lo, mid - 1)
        return int(ks[lo])

    def bounds(self, l: int) -> tuple[int, int]:
        """(k_lo, k_hi) of step l given the counts decided for groups < l (module docstring)."""
        ks = self.allowed[l]
        hi = self._largest(l, lambda k: self._ratio(l, k, self.ctx.lo) <= self.budget)
        short = lambda k: self._ratio(l, k, self.ctx.n) < self.budget  # the rest cannot fill the budget
        if not short(ks[0]):
            lo = int(ks[0])
        else:
            pos = int(np.searchsorted(ks, self._largest(l, short))) + 1
            lo = int(ks[min(pos, len(ks) - 1)])
        return min(lo, hi), hi

    def step(self, l: int, desired: float, bounds: tuple[int, int] | None = None) -> int:
        """Decide group l from a desired count: snap to an allowed count, clip into the bounds."""
        k_lo, k_hi = bounds if bounds is not None else self.bounds(l)
        ks = self.allowed[l]
        k = int(ks[np.argmin(np.abs(ks - desired))])
        chosen = int(np.clip(k, k_lo, k_hi))
        self.clipped += int(chosen != k)
        self.counts[l] = chosen
        return chosen

    def keep(self) -> np.ndarray:
        return self.ctx.keep_from_counts(self.counts)

    def committed(self, l: int) -> float:
        """Cost ratio of the decided prefix with every later group at its floor."""
        return self._ratio(l, None, self.ctx.lo)

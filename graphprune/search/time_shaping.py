"""Time shaping: among allocations meeting a MACs (or params) budget, prefer the one that runs faster.

Allocation ranks units by importance and meets the budget's cost; two allocations of equal MACs can differ
in time, because layers differ in time per MAC: a 32-channel stem at 112x112 followed by a depthwise conv and
two activations (EfficientNet-B0, MobileNetV2) is ~10 % of the model's time for ~3 % of its MACs, so the
MACs-only fill keeps it whole (rounding it up from 17 to 32 units costs almost no MACs) while the time it
could free is spent nowhere.

Rule (``shape_for_time``), after the fill, with the time of ``time_of`` (the latency model's prediction on
the target, else ``cost.TimeProxyCost``):

1. For each group, narrow it alone one menu step; rank the groups by time freed per MAC freed.
2. For the best ``CANDIDATES`` of them: narrow, then refill the freed budget by importance (the allocation's
   own fill, the narrowed group excluded).  Take the one with the lowest time.
3. Accept it when the time falls by at least ``MIN_GAIN`` of the current time, the kept importance
   (per-group normalised scores, summed) stays at least ``1 - IMPORTANCE_SLACK`` of the allocation's, and the
   budget stays spent: the cost falls by at most ``SPEND_SLACK`` of the dense cost (a plan that is faster only
   because it spends less of the budget is not faster per MAC).
   Repeat from 1 (at most ``MAX_MOVES`` moves).
4. Keep the moves only when together they cut the time by at least ``MIN_TOTAL_GAIN``: the proxy's error is
   larger than that, and measured on ORT CPU, RegNetY-800MF's 0.9 % predicted gain (stem and first stage
   narrowed) ran 1-2 % slower; EfficientNet-B0 (11 % predicted) and MobileNetV2 (8 %) ran 3-35 % faster.

No group is narrowed below ``MIN_KEPT_OF_ALLOCATED`` of the width the importance allocation gave it: the
per-group normalised importance sum cannot see what narrowing one layer far costs in accuracy (it even rises
when budget moves to late layers, whose units are cheap), so the distance from the importance allocation is
bounded directly.

The budget holds after every move (the refill only steps while it fits), so shaping never gives up the
user's budget; importance stays the ranking within each group, and across groups the slack bounds how much of
it a faster allocation may trade.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["shape_for_time", "ranked_narrowings", "ShapingResult", "MIN_GAIN", "IMPORTANCE_SLACK", "MAX_MOVES",
           "CANDIDATES", "MIN_KEPT_OF_ALLOCATED", "SPEND_SLACK", "MIN_TOTAL_GAIN"]

MIN_GAIN = 0.002  # of the current time: smaller gains are below what any runtime can show
IMPORTANCE_SLACK = 0.01  # of the allocation's kept (normalised) importance that faster widths may cost
MIN_KEPT_OF_ALLOCATED = 0.5  # a group keeps at least this fraction of its importance-allocated width
SPEND_SLACK = 0.01  # of the dense cost: how much less of the budget a shaped plan may spend
MIN_TOTAL_GAIN = 0.02  # of the unshaped plan's time: below this the moves are undone (rule 4)
MAX_MOVES = 24
CANDIDATES = 4


@dataclass
class ShapingResult:
    """Counts after shaping, the time and kept importance before and after, and the moves made."""

    counts: np.ndarray
    time_before: float
    time_after: float
    importance_before: float
    importance_after: float
    moves: list[str]


def shape_for_time(counts: np.ndarray, lo: np.ndarray, menus, keep_of: Callable[[np.ndarray], np.ndarray],
                   time_of: Callable[[np.ndarray], float], macs_of: Callable[[np.ndarray], float],
                   importance_of: Callable[[np.ndarray], float],
                   refill: Callable[[np.ndarray, int], np.ndarray], names: list[str],
                   dense_cost: float) -> ShapingResult:
    """Move budget from groups slow per MAC to the others while time falls (module docstring).

    Args:
        counts: kept units per group, meeting the budget (the fill's result).
        lo: per-group floors.  menus: ``WidthMenus`` (the narrowing steps).
        keep_of: counts -> keep mask.  time_of / macs_of / importance_of: of a keep mask.
        refill: (counts, excluded group) -> counts stepped up by importance while the budget holds.
        names: group names, for the moves' descriptions.
        dense_cost: ``macs_of`` of the full model (``SPEND_SLACK`` is a fraction of it).
    """
    keep, initial = keep_of(counts), counts
    t0, i0 = time_of(keep), importance_of(keep)
    now_t, moves = t0, []
    lo = np.maximum(lo, np.ceil(MIN_KEPT_OF_ALLOCATED * counts).astype(np.int64))
    floors = ((1 - IMPORTANCE_SLACK) * i0, macs_of(keep) - SPEND_SLACK * dense_cost)
    for _ in range(MAX_MOVES):
        best = _best_move(counts, lo, menus, keep_of, time_of, macs_of, importance_of, refill, now_t, floors)
        if best is None:
            break
        gi, counts, now_t = best
        moves.append(f"{names[gi]} -> {counts[gi]}")
    if now_t > (1 - MIN_TOTAL_GAIN) * t0:
        return ShapingResult(initial, t0, t0, i0, i0, [])
    return ShapingResult(counts, t0, now_t, i0, importance_of(keep_of(counts)), moves)


def _narrower(menus, gi: int, count: int, lo: int) -> int | None:
    widths = menus.allowed(gi, lo)
    below = widths[widths < count]
    return int(below[-1]) if len(below) else None


def ranked_narrowings(counts: np.ndarray, lo: np.ndarray, menus, keep_of, time_of, macs_of,
                      now_t: float) -> list[tuple[int, np.ndarray]]:
    """Rule 1: each group narrowed alone one menu step, as (group, counts), best time freed per MAC freed first."""
    now_macs = macs_of(keep_of(counts))
    rates = []
    for gi in range(len(counts)):
        k = _narrower(menus, gi, int(counts[gi]), int(lo[gi]))
        if k is None:
            continue
        trial = counts.copy()
        trial[gi] = k
        narrowed = keep_of(trial)
        freed_t, freed_macs = now_t - time_of(narrowed), now_macs - macs_of(narrowed)
        if freed_t > 0:
            rates.append((freed_t / max(freed_macs, 1e-9), gi, trial))
    return [(gi, trial) for _, gi, trial in sorted(rates, key=lambda r: -r[0])]


def _best_move(counts, lo, menus, keep_of, time_of, macs_of, importance_of, refill, now_t, floors):
    best = None
    for gi, trial in ranked_narrowings(counts, lo, menus, keep_of, time_of, macs_of, now_t)[:CANDIDATES]:
        filled = refill(trial, gi)
        keep = keep_of(filled)
        t = time_of(keep)
        if t < now_t * (1 - MIN_GAIN) and importance_of(keep) >= floors[0] and macs_of(keep) >= floors[1] and \
                (best is None or t < best[2]):
            best = (gi, filled, t)
    return best

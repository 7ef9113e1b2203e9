"""Rate-distortion allocation: spend the budget where it buys the least output distortion.

1. **Distortion** (measured on calibration inputs, masked model, BatchNorm recalibrated as the evaluator
   does): ``D(keep) = (1/N) Σ_x ||f_keep(x) − f_dense(x)||²``, the squared error of the model's outputs
   (every floating tensor it returns, e.g. the logits) against the dense model, summed over output
   elements and averaged over the N calibration samples.
2. **Unit importance** (``unit_order="distortion"``): ``d_u = D(all units but u)``, one measurement per
   prunable unit; within a group the units with the smallest ``d_u`` are removed first.
   ``unit_order="scores"`` keeps the importance ``prune`` computed (``ctx.scores``) and skips these
   measurements.
3. **Curves** per group g: the widths it may keep (its menu, floor to ``n_g``), and at each width k
   * the rate ``R_g(k)``: the budget's cost ratio (``ctx.cost``: MACs by default, params, predicted latency)
     with g at k and every other group whole;
   * the distortion ``D_g(k)``: measured with g at k (its top-k units) and every other group whole, at
     ``points`` widths spread over the menu (``D_g(n_g) = 0``), made non-increasing in k and interpolated
     linearly in k in between.
4. **Equal slope** (Lagrangian): for a multiplier λ >= 0 every group independently takes the width
   minimising ``D_g(k) + λ·R_g(k)`` (ties: the narrower).  The choice only changes where λ crosses a slope
   ``(D_g(i) − D_g(j)) / (R_g(j) − R_g(i))`` of some group's curve, and the kept widths shrink as λ grows,
   so λ is bisected over one value between each pair of consecutive slopes: the smallest whose plan fits
   the budget (true cost, not the sum of the ``R_g``).  Every group then sits where one more unit of cost buys the same distortion drop λ.
5. **Fill**: the budget left over (the Lagrangian only reaches the convex hull's corners) is spent one
   menu step at a time on the step with the largest distortion drop per cost that still fits; with coarse
   menus leaving more than ``allocate.PRECISION`` unused, the finer fallback menus take it up.

Assumed, not measured: **distortion is additive across groups** (``D(plan) ≈ Σ_g D_g(k_g)``, each term
measured with the other groups whole), as are the rates when choosing (the final plan's true cost is what
must fit).  Interactions between groups are ignored, as in ``sensitivity``; unlike it, the curves are in
the budget's cost units, so a group whose units cost more must buy proportionally less distortion.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils._pytree import tree_flatten
from tqdm.auto import tqdm

from ..budget import BudgetError
from ..evaluate import CandidateEvaluator, split_batch
from .allocate import PRECISION, _floor_message, _keep_from_counts
from .menus import WidthMenus
from .search_context import SearchContext, SearchResult

__all__ = ["RateDistortionConfig", "RDCurve", "lagrangian_choice", "candidate_lambdas", "equal_slope_allocation", "fill_by_slope",
           "rate_distortion_search"]


@dataclass(frozen=True)
class RateDistortionConfig:
    """``points``: widths measured per group curve (floor and full width included); ``unit_order``:
    ``"distortion"`` (measure each unit's removal) or ``"scores"`` (the given importance)."""

    points: int = 6
    unit_order: str = "distortion"

    def __post_init__(self) -> None:
        if self.unit_order not in ("distortion", "scores"):
            raise ValueError(f"unit_order must be 'distortion' or 'scores', got {self.unit_order!r}")
        if self.points < 2:
            raise ValueError(f"points must be >= 2 (the floor and the full width), got {self.points}")


@dataclass
class RDCurve:
    """One group's operating points, ascending in width: ``counts`` kept, ``rate`` (cost ratio with only this
    group changed) and ``distortion`` (non-increasing, 0 at the full width)."""

    counts: np.ndarray
    rate: np.ndarray
    distortion: np.ndarray


# ---- the allocation (pure numpy: tests compare it with brute force) -----------------------------------
def lagrangian_choice(curves: list[RDCurve], lam: float) -> np.ndarray:
    """Per curve, the index of the point minimising ``D + λ·R`` (ties: the smallest index, the narrowest)."""
    if np.isinf(lam):
        return np.zeros(len(curves), dtype=np.int64)
    return np.array([int(np.argmin(c.distortion + lam * c.rate)) for c in curves], dtype=np.int64)


def candidate_lambdas(curves: list[RDCurve]) -> np.ndarray:
    """One λ inside each interval between consecutive breakpoints (the slopes at which some curve's choice
    changes), ascending, ending with ∞ (every curve at its narrowest point).

    NOTE: the midpoints, not the slopes themselves: at a slope two points tie up to rounding, and which one
    ``argmin`` takes there would be float noise (breaking the monotonicity the bisection needs)."""
    slopes = [np.array([0.0])]
    for c in curves:
        dr = c.rate[None, :] - c.rate[:, None]  # [i, j] = R_j − R_i
        dd = c.distortion[:, None] - c.distortion[None, :]  # D_i − D_j
        upper = np.triu(np.ones_like(dr, dtype=bool), 1) & (dr > 0)
        slopes.append(np.maximum(dd[upper] / dr[upper], 0.0))
    s = np.unique(np.concatenate(slopes))
    return np.concatenate([[0.0], (s[:-1] + s[1:]) / 2, [2 * s[-1] + 1.0, np.inf]])


def equal_slope_allocation(curves: list[RDCurve], fits: Callable[[np.ndarray], bool]) -> tuple[np.ndarray, float]:
    """Point indices (one per curve) of the smallest λ whose Lagrangian choice ``fits``, and that λ.

    ``fits(indices)`` must be monotone: true for a plan, true for any plan no wider.  Raises ``ValueError``
    when not even every curve's first point fits."""
    lams = candidate_lambdas(curves)
    if not fits(lagrangian_choice(curves, np.inf)):
        raise ValueError("not even the narrowest point of every curve fits the budget")
    lo, hi = 0, len(lams) - 1  # invariant: lams[hi] fits
    if fits(lagrangian_choice(curves, lams[0])):
        hi = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(lagrangian_choice(curves, lams[mid])) else (mid, hi)
    return lagrangian_choice(curves, lams[hi]), float(lams[hi])


def fill_by_slope(curves: list[RDCurve], chosen: np.ndarray, fits: Callable[[np.ndarray], bool]) -> np.ndarray:
    """Step curves one point up while the plan fits, the step with the largest ``ΔD/ΔR`` first."""
    chosen = chosen.copy()
    while True:
        gains = []
        for gi, (c, i) in enumerate(zip(curves, chosen)):
            if i + 1 < len(c.counts):
                dr = max(c.rate[i + 1] - c.rate[i], 1e-15)
                gains.append(((c.distortion[i] - c.distortion[i + 1]) / dr, -gi))
        for _, neg_gi in sorted(gains, reverse=True):
            trial = chosen.copy()
            trial[-neg_gi] += 1
            if fits(trial):
                chosen = trial
                break
        else:
            return chosen


def _keep(ctx: SearchContext, counts: np.ndarray) -> np.ndarray:
    """Top-k units per group for ``counts`` already on a menu.

    NOTE: not ``ctx.keep_from_counts``: its rounding would lift a fallback (finer) width to the next entry of
    the coarse menu."""
    return _keep_from_counts(ctx.graph, ctx.order, np.asarray(counts, dtype=np.int64))


# ---- measuring the curves -------------------------------------------------------------------------------
class _Distortion:
    """``D(keep)`` on the evaluator's calibration inputs (module docstring, 1)."""

    def __init__(self, evaluator: CandidateEvaluator, strategy: str):
        self.evaluator = evaluator
        self.inputs = [split_batch(b)[0] for b in evaluator.calib]
        if not self.inputs:
            raise ValueError(f"strategy {strategy!r} measures output distortion on calibration inputs: pass "
                             f"calib_data=... (an iterable of batches, e.g. (inputs, labels))")
        self.samples = 0
        self.calls = 0
        self.reference = self._outputs(evaluator.graph.full_keep())

    @torch.no_grad()
    def _outputs(self, keep: np.ndarray) -> list[torch.Tensor]:
        model = self.evaluator.model(keep)
        outputs = []
        for inputs in self.inputs:
            leaves, _ = tree_flatten(model(*inputs))
            outputs.extend(t.detach().double() for t in leaves if torch.is_tensor(t) and t.is_floating_point())
        if not self.samples:
            self.samples = sum(int(x[0].shape[0]) if x and torch.is_tensor(x[0]) and x[0].ndim else 1
                               for x in self.inputs)
        return outputs

    def __call__(self, keep: np.ndarray) -> float:
        self.calls += 1
        err = sum(float(((a - b) ** 2).sum()) for a, b in zip(self._outputs(keep), self.reference))
        return err / max(self.samples, 1)


def unit_distortion(ctx: SearchContext, measure: _Distortion) -> np.ndarray:
    """``d_u`` for every unit of a group that may shrink (0 elsewhere); one measurement per unit."""
    d = np.zeros(ctx.graph.n_units)
    groups = [gi for gi in range(len(ctx.n)) if ctx.lo[gi] < ctx.n[gi]]
    bar = tqdm(total=int(sum(ctx.n[gi] for gi in groups)), desc="unit distortion", disable=not ctx.progress,
               leave=False)
    full = ctx.graph.full_keep()
    for gi in groups:
        g = ctx.graph.groups[gi]
        for u in range(g.first_unit, g.first_unit + g.n_units):
            keep = full.copy()
            keep[u] = False
            d[u] = measure(keep)
            bar.update()
    bar.close()
    return d


def _curve(ctx: SearchContext, gi: int, widths: np.ndarray, measured: dict[int, float]) -> RDCurve:
    counts = ctx.n.copy()
    rate = []
    for k in widths:
        counts[gi] = k
        rate.append(ctx.ratio_of(_keep(ctx, counts)))
    ks = np.array(sorted(measured))
    dist = np.array([measured[k] for k in ks])
    dist = np.maximum.accumulate(dist[::-1])[::-1]  # NOTE: keeping more never adds distortion (noise, BN)
    return RDCurve(np.asarray(widths), np.array(rate), np.interp(widths, ks, dist))


def measure_curves(ctx: SearchContext, measure: _Distortion, points: int) -> dict[int, dict[int, float]]:
    """Per group, ``{width: D_g(width)}`` at ``points`` widths of its menu (the full width is 0, not measured)."""
    measured: dict[int, dict[int, float]] = {}
    plan: dict[int, list[int]] = {}
    for gi in range(len(ctx.n)):
        allowed = ctx.allowed(gi)
        picks = np.unique(allowed[np.round(np.linspace(0, len(allowed) - 1, points)).astype(int)])
        plan[gi] = [int(k) for k in picks if k < ctx.n[gi]]
    bar = tqdm(total=sum(map(len, plan.values())), desc="rd curves", disable=not ctx.progress, leave=False)
    for gi, widths in plan.items():
        measured[gi] = {int(ctx.n[gi]): 0.0}
        for k in widths:
            counts = ctx.n.copy()
            counts[gi] = k
            measured[gi][k] = measure(_keep(ctx, counts))
            bar.update()
    bar.close()
    return measured


# ---- the strategy ----------------------------------------------------------------------------------------
def _widths(ctx: SearchContext, menus: WidthMenus, gi: int) -> np.ndarray:
    return menus.allowed(gi, int(ctx.lo[gi]))


def _plan_fits(ctx: SearchContext, curves: list[RDCurve]) -> Callable[[np.ndarray], bool]:
    def fits(idx: np.ndarray) -> bool:
        counts = np.array([c.counts[i] for c, i in zip(curves, idx)])
        return ctx.ratio_of(_keep(ctx, counts)) <= ctx.budget.ratio
    return fits


def _refill(ctx: SearchContext, curves: list[RDCurve], chosen: np.ndarray, menus: WidthMenus,
            measured: dict[int, dict[int, float]]) -> tuple[list[RDCurve], np.ndarray]:
    """The same plan on curves over the finer ``menus`` widths, filled by slope."""
    counts = [c.counts[i] for c, i in zip(curves, chosen)]
    fine = [_curve(ctx, gi, _widths(ctx, menus, gi), measured[gi]) for gi in range(len(curves))]
    start = np.array([int(np.searchsorted(c.counts, k)) for c, k in zip(fine, counts)])
    return fine, fill_by_slope(fine, start, _plan_fits(ctx, fine))


def rate_distortion_search(ctx: SearchContext, config: RateDistortionConfig = RateDistortionConfig()) -> SearchResult:
    """Keep mask for ``ctx.budget`` by equal-slope rate-distortion allocation (module docstring)."""
    start = time.perf_counter()
    measure = _Distortion(ctx.need_evaluator("rate_distortion"), "rate_distortion")
    if config.unit_order == "distortion":
        ctx = dataclasses.replace(ctx, scores=unit_distortion(ctx, measure))
    measured = measure_curves(ctx, measure, config.points)
    curves = [_curve(ctx, gi, ctx.allowed(gi), measured[gi]) for gi in range(len(ctx.n))]
    fits = _plan_fits(ctx, curves)
    try:
        chosen, lam = equal_slope_allocation(curves, fits)
    except ValueError:
        floor = ctx.ratio_of(ctx.keep_from_counts(ctx.lo))
        raise BudgetError(_floor_message(ctx.budget, ctx.cost, floor, ctx.menus, ctx.cfg)) from None
    lagrangian = [int(c.counts[i]) for c, i in zip(curves, chosen)]
    chosen = fill_by_slope(curves, chosen, fits)
    counts = np.array([c.counts[i] for c, i in zip(curves, chosen)])
    if ctx.menus.fallback is not None and ctx.ratio_of(_keep(ctx, counts)) < ctx.budget.ratio - PRECISION:
        curves, chosen = _refill(ctx, curves, chosen, ctx.menus.fallback, measured)  # NOTE: as allocate's fill
        counts = np.array([c.counts[i] for c, i in zip(curves, chosen)])
    keep = _keep(ctx, counts)
    predicted = float(sum(c.distortion[i] for c, i in zip(curves, chosen)))
    info = {"lambda": lam, "lagrangian_counts": lagrangian, "predicted_distortion": predicted,
            "measured_distortion": measure(keep), "unit_order": config.unit_order,
            "curves": {ctx.graph.groups[gi].name: {int(k): v for k, v in sorted(m.items())}
                       for gi, m in measured.items()}}
    return SearchResult(keep, ctx.ratio_of(keep), None, measure.calls, time.perf_counter() - start, info=info)


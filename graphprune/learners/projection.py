"""Projection of a learned sparsity pattern onto the budget, and moving unit values between graphs.

A learner ends with a score per unit (a gate magnitude) and the keep mask it learned (nonzero gates).
That mask is used as is when it is *admissible*: every group keeps at least its floor (the allocator's
``min_units`` / ``max_prune_ratio``), no tensor dim loses every element, and the achieved ratio ``r``
lies in ``[β − tol, β]``.  Otherwise it is *projected*: :func:`graphprune.search.allocate` with the
``"learned"`` strategy ranks units by the **raw** score across all groups (no per-group normalisation:
the sparsity penalty already made magnitudes comparable), bisects a global threshold to the budget and
fills greedily.  The report says how far the projection moved: units flipped, and the ratio before/after.

:func:`transfer` carries per-unit values from one graph to another built from an edited copy of the
same model (gates folded, blocks or branches removed): unit identities are matched through parameter
dims both graphs share with the same size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..budget import Budget
from ..depgraph import DependencyGraph
from ..search import AllocationConfig, allocate
from ..search.allocate import STRATEGIES, _floors

__all__ = ["Projection", "project", "transfer", "learned_counts"]


def learned_counts(n: np.ndarray, scores: np.ndarray, graph: DependencyGraph):
    """The ``"learned"`` allocation family: keep units whose raw score is in the global top fraction ``t``.

    It is ``global_raw``'s family (``search.allocate.STRATEGIES["learned"]``; the row is in
    ``graphprune.strategies``)."""
    return STRATEGIES["learned"](n, scores, graph)


@dataclass
class Projection:
    """The final keep mask and how it relates to the learned one (ratios are of the *reference* cost)."""

    keep: np.ndarray
    learned_ratio: float
    ratio: float
    moved_units: int
    projected: bool
    reason: str

    def to_dict(self) -> dict:
        return {"learned_ratio": self.learned_ratio, "ratio": self.ratio, "moved_units": self.moved_units,
                "projected": self.projected, "reason": self.reason, "kept_units": int(self.keep.sum()),
                "units": int(len(self.keep))}


def _inadmissible(graph: DependencyGraph, keep: np.ndarray, ratio: float, budget: float, tol: float,
                  cfg: AllocationConfig) -> str:
    """Why ``keep`` cannot be used as is ('' when it can)."""
    _, lo = _floors(graph, cfg)
    kept = np.array([keep[g.units].sum() for g in graph.groups])
    if (kept < lo).any():
        return f"{int((kept < lo).sum())} group(s) below their floor"
    if ((graph.class_sizes(keep) == 0) & (graph.class_size > 0)).any():
        return "a tensor dim would lose every element"
    if ratio > budget + 1e-12:
        return f"learned ratio {ratio:.4f} is over the budget {budget:.4f}"
    if ratio < budget - tol:
        return f"learned ratio {ratio:.4f} is more than {tol:.2f} under the budget {budget:.4f}"
    return ""


def project(graph: DependencyGraph, scores: np.ndarray, learned: np.ndarray, budget: Budget,
            tolerance: float = 0.02, reference: float | None = None,
            cfg: AllocationConfig = AllocationConfig()) -> Projection:
    """Keep mask meeting ``budget`` (module docstring).

    Args:
        reference: the dense cost the budget is a fraction of (default: ``graph``'s own dense cost; a
            graph whose blocks were already removed passes the original model's cost).
    """
    metric = budget.metric
    dense = getattr(graph.cost(), metric)
    reference = dense if reference is None else reference
    ratio_of = lambda keep: getattr(graph.cost(keep), metric) / reference  # noqa: E731
    learned = np.asarray(learned, dtype=bool)
    learned_ratio = ratio_of(learned)
    reason = _inadmissible(graph, learned, learned_ratio, budget.ratio, tolerance, cfg)
    if not reason:
        return Projection(learned.copy(), learned_ratio, learned_ratio, 0, False, "learned mask meets the budget")
    local = min(1.0, budget.ratio * reference / dense)
    keep = allocate(graph, np.asarray(scores, dtype=np.float64), Budget(local, metric), "learned", cfg).keep
    return Projection(keep, learned_ratio, ratio_of(keep), int((keep != learned).sum()), True, reason)


def _param_units(graph: DependencyGraph) -> dict:
    """(param dim) -> element->unit array, for the parameter dims of every group."""
    out = {}
    for g in graph.groups:
        for d in g.parameters:
            c = graph.dim_class[d]
            lo = graph.class_offset[c]
            out[d] = graph.element_unit[lo:lo + graph.class_size[c]]
    return out


def transfer(source: DependencyGraph, values: np.ndarray, target: DependencyGraph,
             default: float = 0.0) -> np.ndarray:
    """Per-unit ``values`` on ``source`` → per-unit values on ``target`` (``default`` where unmatched)."""
    values = np.asarray(values)
    out = np.full(target.n_units, default, dtype=values.dtype)
    done = np.zeros(target.n_units, dtype=bool)
    src = _param_units(source)
    for dim, new_units in _param_units(target).items():
        old_units = src.get(dim)
        if old_units is None or len(old_units) != len(new_units):
            continue
        ok = (new_units >= 0) & (old_units >= 0) & ~done[np.maximum(new_units, 0)]
        out[new_units[ok]] = values[old_units[ok]]
        done[new_units[ok]] = True
    return out

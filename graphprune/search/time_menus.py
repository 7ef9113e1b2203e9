"""Time-effective widths: drop menu widths whose cut saves MACs but little measured time.

A latency model's menus (``menus.py``) already skip widths just past a latency step.  They do not know
that some layers' time barely moves with their width at all: measured on ONNX Runtime CPU, a grouped conv
with 16 channels per group narrowed to 8 per group keeps 0.76-0.86 of its time for 1/4 of its MACs (12 per
group runs 1.3-1.4x *slower* than 16), while a 1x1 conv halved keeps about half.  A MACs (or params) budget
spent on such a layer buys little speed, and costs accuracy that a layer whose time does fall would not.

Rule, with a latency model and ``round_to="auto"``: for each group and each width ``k`` on its menu, narrow that
group alone to ``k`` and compare the predicted time it frees per MAC it frees with the model's own rate,
``(dense − reference) ms / (dense − reference) MACs`` with every group at its widest menu width at or below
``REFERENCE_KEEP`` of its units (a small cut, like one group's alone: the table's calibration is a power law, so
rates measured far apart on it would differ for that reason alone). Widths whose rate is below ``MIN_RATE`` of
it are dropped; a group left with none is kept whole. The unfiltered menus stay as the fallback, used when the
budget cannot be met without them (``AllocationConfig.menus``), so a tight budget is still reachable.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..depgraph import DependencyGraph
from .cost import FastCost
from .menus import WidthMenus

__all__ = ["MIN_RATE", "REFERENCE_KEEP", "time_effective_menus", "freed_rates"]

MIN_RATE = 0.5  # of the model's average ms per MAC; below this a cut is MACs without time
REFERENCE_KEEP = 0.9  # the model's rate: every group at this fraction (one group alone barely moves the model)


def _narrowed(graph: DependencyGraph, group: int, k: int) -> np.ndarray:
    keep = graph.full_keep()
    keep[graph.groups[group].units] = np.arange(graph.groups[group].n_units) < k
    return keep


def _reference(graph: DependencyGraph, menus: WidthMenus) -> np.ndarray:
    """Every group at its widest menu width at or below ``REFERENCE_KEEP`` of its units (full if none)."""
    keep = graph.full_keep()
    for gi, g in enumerate(graph.groups):
        widths = menus.allowed(gi, 1)
        below = widths[widths <= REFERENCE_KEEP * g.n_units]
        keep[g.units] = np.arange(g.n_units) < (below[-1] if len(below) else g.n_units)
    return keep


def freed_rates(graph: DependencyGraph, menus: WidthMenus, latency: Any) -> list[np.ndarray]:
    """Per group, per menu width below full: predicted ms freed per MAC freed, over the model's own rate
    (``inf`` where the cut frees time but no MACs, 0 where it frees MACs but no time)."""
    macs = FastCost(graph, "macs")
    full = graph.full_keep()
    dense_ms, shallow = float(latency.predict_ms(full)), _reference(graph, menus)
    freed_macs = macs.dense - macs.of(shallow)
    model_rate = (dense_ms - float(latency.predict_ms(shallow))) / freed_macs if freed_macs > 0 else 0.0
    rates = []
    for gi, g in enumerate(graph.groups):
        widths = menus.allowed(gi, 1)
        out = np.full(len(widths), np.inf)
        for i, k in enumerate(widths[widths < g.n_units]):
            keep = _narrowed(graph, gi, int(k))
            d_ms, d_macs = dense_ms - float(latency.predict_ms(keep)), macs.dense - macs.of(keep)
            if d_macs > 0 and model_rate > 0:
                out[i] = max(d_ms, 0.0) / d_macs / model_rate
        rates.append(out)
    return rates


def time_effective_menus(graph: DependencyGraph, menus: WidthMenus, latency: Any,
                         min_rate: float = MIN_RATE) -> WidthMenus:
    """``menus`` without the widths that free less than ``min_rate`` of the model's time per MAC (module
    docstring); the given menus become the fallback."""
    kept, whole = [], 0
    for gi, rates in enumerate(freed_rates(graph, menus, latency)):
        widths = menus.allowed(gi, 1)
        menu = widths[(rates >= min_rate) | (widths == graph.groups[gi].n_units)]
        whole += len(menu) == 1 and len(widths) > 1
        kept.append(menu)
    if not any(len(k) < len(menus.allowed(gi, 1)) for gi, k in enumerate(kept)):
        return menus
    policy = (f"{menus.policy}; widths freeing < {min_rate:g}x the model's ms per MAC dropped ({whole} groups "
              "kept whole)")
    return WidthMenus(menus.n, menus=kept, policy=policy, fallback=menus)

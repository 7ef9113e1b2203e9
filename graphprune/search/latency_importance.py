"""Latency-normalised importance: what a unit is worth per millisecond it frees on the target.

``"<criterion>_latency"`` (e.g. ``"l2_latency"``, ``"taylor_latency"``) scores a unit as its criterion
score, normalised within its group (mean 1), divided by the predicted time one unit of its group frees:

    freed_g = (predict_ms(full) - predict_ms(full with group g one menu step narrower)) / units removed

A step of the group's width menu is used rather than one unit: latency moves in steps, so one unit alone
often frees nothing.  Groups whose step frees no predicted time get ``EPS_MS`` (their units then rank
highest: removing them buys nothing).

The scores are comparable across groups by construction; they matter for ``strategy="global_raw"``
(``"global"`` re-normalises each group, which cancels a per-group factor; the searches use scores only
to order units within a group).
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..depgraph import DependencyGraph

__all__ = ["SUFFIX", "is_latency_criterion", "freed_ms_per_unit", "latency_normalised_scores"]

SUFFIX = "_latency"
EPS_MS = 1e-9


def is_latency_criterion(importance: Any) -> bool:
    from ..importance import CRITERIA

    return isinstance(importance, str) and importance.endswith(SUFFIX) and importance[:-len(SUFFIX)] in CRITERIA


def freed_ms_per_unit(graph: DependencyGraph, latency: Any) -> np.ndarray:
    """Per unit: predicted ms its group frees per unit when narrowed by one menu step (module docstring)."""
    full = graph.full_keep()
    dense = float(latency.predict_ms(full))
    freed = np.full(graph.n_units, EPS_MS)
    for gi, g in enumerate(graph.groups):
        menu = np.asarray(latency.width_menu(gi))
        narrower = int(menu[-2]) if len(menu) > 1 else g.n_units - 1
        if narrower < 1:
            continue
        keep = full.copy()
        keep[np.arange(graph.n_units)[g.units][narrower:]] = False
        saved = (dense - float(latency.predict_ms(keep))) / (g.n_units - narrower)
        freed[g.units] = max(saved, EPS_MS)
    return freed


def latency_normalised_scores(graph: DependencyGraph, importance: str, latency: Any,
                              calib: Iterable | None = None) -> np.ndarray:
    """Scores of ``importance`` (``"<criterion>_latency"``) for ``graph`` on ``latency``'s target."""
    from ..importance import CRITERIA, normalize_per_group, score_units

    if latency is None:
        raise ValueError(f"importance {importance!r} divides by predicted time: pass target=Target(...) or "
                         "latency_model=... to prune (or AllocationConfig(latency=...))")
    base = importance[:-len(SUFFIX)]
    raw = score_units(graph, base, calib=calib if CRITERIA[base].needs_data else None)
    return normalize_per_group(graph, raw) / freed_ms_per_unit(graph, latency)

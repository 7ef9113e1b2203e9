"""Stage 3 — importance: one score per prunable unit (coupled channel set), from the group's weights.

Criteria (``CRITERIA`` table): for a unit u and every parameter dim d of its group, take the slice of
the parameter at the unit's indices along d;

* ``l1``/``l2``: ``(sum_d sum |w|^p)^(1/p)`` over all coupled slices (producer rows, BN, consumer columns);
* ``bn``: sum of |γ| of the BatchNorm/GroupNorm/LayerNorm scales in the group (Network Slimming);
* ``random``: a seeded control.

``normalize`` rescales scores within each group (``mean``/``max``/``sum``) so groups compare in a global
ranking.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .depgraph import DependencyGraph, Dim

__all__ = ["CRITERIA", "score_units", "normalize_per_group"]


def _param(graph: DependencyGraph, key: str) -> torch.Tensor | None:
    name = key[1:]
    try:
        return graph.traced.gm.get_parameter(name)
    except AttributeError:
        return None


def _per_element(t: torch.Tensor, axis: int, p: float) -> np.ndarray:
    dims = [a for a in range(t.ndim) if a != axis]
    w = t.detach().float()
    w = w * w if p == 2.0 else (w.abs() if p == 1.0 else w.abs().pow(p))
    return (w.sum(dim=dims) if dims else w).cpu().numpy().astype(np.float64)


def _accumulate(graph: DependencyGraph, dims: list[Dim], per_element: Callable) -> np.ndarray:
    """Sum ``per_element(tensor, axis)`` of the given parameter dims into their units."""
    scores = np.zeros(graph.n_units)
    seen = set()
    for d in dims:
        key = graph.param_alias.get(d.value, d.value)
        if (key, d.axis) in seen:
            continue
        seen.add((key, d.axis))
        t = _param(graph, d.value)
        if t is None:
            continue
        c = graph.dim_class[d]
        lo = graph.class_offset[c]
        units = graph.element_unit[lo:lo + graph.class_size[c]]
        vals = per_element(t, d.axis)
        ok = units >= 0
        np.add.at(scores, units[ok], vals[ok])
    return scores


def _group_dims(graph: DependencyGraph) -> list[Dim]:
    return [d for g in graph.groups for d in g.members if d.value.startswith("@")]


def magnitude(graph: DependencyGraph, p: float) -> np.ndarray:
    return _accumulate(graph, _group_dims(graph), lambda t, a: _per_element(t, a, p)) ** (1.0 / p)


def bn_scale(graph: DependencyGraph) -> np.ndarray:
    norm_types = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    modules = dict(graph.traced.gm.named_modules())
    dims = [d for d in _group_dims(graph) if d.value.endswith(".weight")
            and isinstance(modules.get(d.value[1:-len(".weight")]), norm_types)]
    if not dims:
        raise ValueError("importance 'bn' needs normalisation layers with affine scales; this model has none "
                         "in its prunable groups — use 'l1' or 'l2'")
    return _accumulate(graph, dims, lambda t, a: _per_element(t, a, 1.0))


def random_scores(graph: DependencyGraph, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(graph.n_units)


CRITERIA: dict[str, Callable[[DependencyGraph], np.ndarray]] = {
    "l1": lambda g: magnitude(g, 1.0),
    "l2": lambda g: magnitude(g, 2.0),
    "bn": bn_scale,
    "random": random_scores,
}


def score_units(graph: DependencyGraph, criterion: str | Callable = "l2") -> np.ndarray:
    """Scores for every unit of ``graph`` (higher = more important)."""
    if callable(criterion):
        scores = np.asarray(criterion(graph), dtype=np.float64)
    elif criterion in CRITERIA:
        scores = CRITERIA[criterion](graph)
    else:
        raise ValueError(f"unknown importance {criterion!r}; choose one of {sorted(CRITERIA)} or pass a callable")
    if scores.shape != (graph.n_units,):
        raise ValueError(f"importance returned shape {scores.shape}, expected ({graph.n_units},)")
    return scores


def normalize_per_group(graph: DependencyGraph, scores: np.ndarray, how: str = "mean") -> np.ndarray:
    out = scores.astype(np.float64).copy()
    for g in graph.groups:
        s = out[g.units]
        scale = {"mean": s.mean(), "max": s.max(), "sum": s.sum()}[how] if len(s) else 1.0
        out[g.units] = s / scale if scale > 0 else s
    return out

"""Groups a learner emptied, and reviving them when that disconnected the network.

A sparsity learner may drive *every* unit of a group to zero (all BN scales γ = 0, all masks 0). The
projection still keeps the group's floor (``min_units`` / ``max_prune_ratio``: a layer cannot vanish),
so the exported layer outputs constants.  That is harmless — even the learned function — where the
signal has another path (a residual branch that outputs a constant: the block acts as its shortcut),
and fatal where it has none: MobileNetV2's last 1×1 conv under BN-ISTA (β = 0.5, 16 steps) kept 65
channels all at γ = 0, so the network answered one class for every image and no fine-tuning recovers
it (a ReLU after a constant ≤ 0 passes no gradient).

Rule applied by :func:`graphprune.learners.base.finalize`:

1. :func:`with_tiebreak` — units the learner zeroed are ranked among themselves by their *pretrained*
   magnitude, so a floor kept in an emptied group holds the channels that mattered before learning
   (instead of the first ones by index);
2. :func:`emptied_groups` — groups whose kept units all have learned score 0;
3. :func:`output_is_constant` — the rewritten network, its BatchNorm statistics re-estimated first (stale
   ones can hold a live network's ReLUs shut), gives the same output for two random inputs;
4. only then the learner's ``revive`` hook restores the kept units' pretrained values (BN-ISTA: γ and
   β of those channels), the network is rewritten again and the count is reported.  Learners without
   the hook, or a network still constant after it, get a warning naming the emptied groups.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn
from torch.utils._pytree import tree_leaves

from ..depgraph import DependencyGraph
from ..module_modes import eval_mode

__all__ = ["with_tiebreak", "emptied_groups", "output_spread", "is_constant", "output_is_constant", "DisconnectedWarning"]


class DisconnectedWarning(UserWarning):
    """The learned network's output does not depend on its input."""


def with_tiebreak(scores: np.ndarray, tiebreak: np.ndarray | None) -> np.ndarray:
    """``scores`` with zero entries replaced by tiny values ordered like ``tiebreak``.

    Every replaced value stays below the smallest positive score (by a factor 1e3), so the ranking of
    units the learner kept is unchanged; only ties at zero are broken.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if tiebreak is None:
        return scores
    tiebreak = np.abs(np.asarray(tiebreak, dtype=np.float64))
    zero = scores <= 0
    if not zero.any() or tiebreak[zero].max() <= 0:
        return scores
    positive = scores[~zero]
    ceiling = 1e-3 * positive.min() if positive.size else 1.0
    return np.where(zero, ceiling * tiebreak / tiebreak[zero].max(), scores)


def emptied_groups(graph: DependencyGraph, scores: np.ndarray, keep: np.ndarray) -> list[int]:
    """Indices of groups that keep units but whose kept units all have ``scores`` 0."""
    out = []
    for k, g in enumerate(graph.groups):
        kept = keep[g.units]
        if kept.any() and not (scores[g.units][kept] > 0).any():
            out.append(k)
    return out


@torch.no_grad()
def output_spread(model: nn.Module, example: tuple, trials: int = 2) -> float | None:
    """Largest output difference of ``model`` (eval mode) over ``trials`` random inputs shaped like
    ``example``, relative to the output's scale (at least 1); None when no input is floating point
    (token ids are not redrawn)."""
    if not any(torch.is_tensor(x) and x.is_floating_point() for x in example):
        return None
    outs = []
    with eval_mode(model):
        for _ in range(trials):
            inputs = tuple(torch.randn_like(x) if torch.is_tensor(x) and x.is_floating_point() else x
                           for x in example)
            outs.append([o for o in tree_leaves(model(*inputs)) if torch.is_tensor(o) and o.is_floating_point()])
    spread = 0.0
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            if a.numel():
                spread = max(spread, float((a - b).abs().max()) / max(1.0, float(a.abs().max())))
    return spread


def is_constant(spread: float | None, rtol: float = 1e-6) -> bool:
    """Whether an :func:`output_spread` says the output does not depend on the input (never for None)."""
    return spread is not None and spread <= rtol


def output_is_constant(model: nn.Module, example: tuple, rtol: float = 1e-6) -> bool:
    """True when :func:`output_spread` is at most ``rtol`` (never for integer-only inputs)."""
    return is_constant(output_spread(model, example), rtol)


def warn_disconnected(graph: DependencyGraph, groups: list[int], why: str) -> None:
    """One warning naming the emptied groups and what was (not) done about them."""
    names = ", ".join(graph.groups[k].name for k in groups[:5]) + (" …" if len(groups) > 5 else "")
    warnings.warn(f"the learned network's output does not depend on its input: the learner emptied "
                  f"{len(groups)} group(s) ({names}) {why}; lower the sparsity strength (lam) or learn longer "
                  "at a smaller step", DisconnectedWarning, stacklevel=3)

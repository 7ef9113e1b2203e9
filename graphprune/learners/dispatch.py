"""``graphprune.prune(..., strategy=<learner>, train_data=...)``: the learners behind the public entry point.

``prune`` hands over to :func:`prune_with_learner` when the strategy's row (``graphprune.strategies``) is a
learner; the learner owns stages 2–4 (graph, learning, projection) and ends in the finishing step every
strategy ends in (``graphprune.finish``: rewrite pipeline, verify, fence-and-retry, report); the result
carries its trained weights.
"""
from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from ..budget import Budget
from ..finish import report_of
from ..result import PruneResult
from .base import Learner
from .gal import GAL
from .hsn import HSN
from .ista import BNIsta, NetworkSlimming

__all__ = ["LEARNERS", "make_learner", "prune_with_learner"]

LEARNERS: dict[str, type[Learner]] = {"bn-ista": BNIsta, "slimming": NetworkSlimming, "gal": GAL, "hsn": HSN}


def make_learner(strategy: str, options: dict | None = None) -> Learner:
    if strategy not in LEARNERS:
        raise ValueError(f"train_data= selects a training-time learner; strategy must be one of "
                         f"{sorted(LEARNERS)}, got {strategy!r}")
    return LEARNERS[strategy](**(options or {}))


def prune_with_learner(model, budget: Budget, example_inputs: Any, strategy: str | Learner, train_data: Dataset,
                       return_result: bool = False, options: dict | None = None):
    """Fit ``strategy`` (a ``Learner``, or the name of one with its config fields in ``options``) and return
    the pruned module."""
    learner = strategy if isinstance(strategy, Learner) else make_learner(strategy, options)
    plan = learner.fit(model, train_data, budget, example_inputs)
    r = learner.result
    report = report_of(r.graph, r.projection.keep, budget, {"learn": sum(e["seconds"] for e in r.log.epochs)},
                       dense_graph=learner.graph)
    r.model.train(model.training)
    return PruneResult(r.model, plan, report, r.graph) if return_result else r.model

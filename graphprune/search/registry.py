"""Search strategies that score candidates, by name (their rows in ``graphprune.strategies`` run them).

A row is ``Search(run, options)``: ``run(ctx, **options) -> SearchResult``.  Built-in:

=================  =======================================================================  ==========
``sensitivity``     per-group sensitivity profile + threshold bisection (``sensitivity.py``)  G·L evals
``evolutionary``    genetic search over projected per-group keep ratios (``evolution.py``)     P·T evals
``rl``              CACP policy (GCN PruningNet, REINFORCE) trained at this budget, then its   episodes
                    greedy plan projected onto the budget (``conditional.py``)
``rate_distortion`` output-distortion curves per group in cost units, equal-slope (Lagrangian)    units + G·P
                    allocation (``rate_distortion.py``)                                        forwards
=================  =======================================================================  ==========

The data-free families (``uniform``, ``global``, ``global_raw``, ``learned``) are in ``allocate.STRATEGIES``;
``graphprune.strategies.REGISTRY`` is the table of every strategy (kind, inputs, description), with one
row per name here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from ..budget import Budget
from ..depgraph import DependencyGraph
from ..evaluate import CandidateEvaluator, EvalConfig, classification_eval_fn
from .allocate import AllocationConfig
from .distributed import shard_if_active
from .search_context import SearchContext, SearchResult
from .evolution import EvolutionConfig, evolutionary_search
from .latency_importance import is_latency_criterion, latency_normalised_scores
from .rate_distortion import RateDistortionConfig, rate_distortion_search
from .sensitivity import SensitivityConfig, sensitivity_search
from .supernet import as_supernet_config, supernet_graph

__all__ = ["Search", "SEARCHES", "run_search", "unit_scores"]


def _rl(ctx: SearchContext, episodes: int = 32, **config: Any) -> SearchResult:
    from .conditional import ConditionalSearch, RLConfig

    rl_config = RLConfig(**{"budget_range": (ctx.budget.ratio, ctx.budget.ratio), "seed": ctx.seed, **config})
    search = ConditionalSearch.from_context(ctx, rl_config)
    calls = ctx.evaluator.calls if ctx.evaluator is not None else 0
    search.fit(episodes)
    result = search.search_result(ctx.budget)
    result.evaluations = ctx.need_evaluator("rl").calls - calls
    result.seconds = sum(h["seconds"] for h in search.history) + result.seconds
    return result


@dataclass(frozen=True)
class Search:
    """A strategy: ``run(ctx, **options)``, and its default options."""

    run: Callable[..., SearchResult]
    options: dict[str, Any] = field(default_factory=dict)


SEARCHES: dict[str, Search] = {
    "sensitivity": Search(lambda ctx, **kw: sensitivity_search(ctx, SensitivityConfig(**kw))),
    "evolutionary": Search(lambda ctx, **kw: evolutionary_search(ctx, EvolutionConfig(**kw))),
    "rl": Search(_rl),
    "rate_distortion": Search(lambda ctx, **kw: rate_distortion_search(ctx, RateDistortionConfig(**kw))),
}


def run_search(name: str, graph: DependencyGraph, scores: np.ndarray, budget: Budget,
               cfg: AllocationConfig = AllocationConfig(), *, eval_fn: Callable | None = None,
               calib_data: Iterable | None = None, eval_config: EvalConfig = EvalConfig(),
               options: dict[str, Any] | None = None, seed: int = 0, progress: bool = False,
               supernet: Any = None, train_data: Any = None) -> SearchResult:
    """Run strategy ``name``; ``eval_fn`` defaults to minus the cross-entropy on ``calib_data``.

    NOTE: that default scores candidates on the data that recalibrates them; pass an ``eval_fn`` on held-out
    batches (``evaluate.classification_eval_fn``) for an unbiased search.

    ``supernet`` (a ``supernet.SupernetConfig`` or True) with ``train_data``: candidates are scored on
    supernet-trained weights (``supernet.py``); the returned keep mask is for ``graph`` as given, and
    ``result.info["supernet"]`` summarises the training.
    """
    if name not in SEARCHES:
        raise ValueError(f"unknown search strategy {name!r}; choose one of {sorted(SEARCHES)}")
    if eval_fn is None and calib_data is not None:
        eval_fn = classification_eval_fn(calib_data, metric="neg_loss")
    eval_graph, trained = graph, None
    if as_supernet_config(supernet) is not None and eval_fn is not None:
        eval_graph, trained = supernet_graph(graph, scores, train_data, as_supernet_config(supernet), cfg,
                                             budget.metric)
    evaluator = CandidateEvaluator(eval_graph, eval_fn, calib_data, eval_config) if eval_fn is not None else None
    evaluator = shard_if_active(evaluator)  # inside distributed.sharded_evaluation(): split across ranks
    ctx = SearchContext(graph, scores, budget, cfg, evaluator, seed, progress)
    search = SEARCHES[name]
    result = search.run(ctx, **{**search.options, **(options or {})})
    if trained is not None:
        result.info["supernet"] = trained.summary()
    return result


def unit_scores(graph: DependencyGraph, importance: str | Callable, cfg: AllocationConfig = AllocationConfig(),
                calib_data: Iterable | None = None) -> np.ndarray:
    """``prune``'s stage 3: a score per unit (``calib_data`` feeds the data-driven criteria).

    ``importance="<criterion>_latency"`` divides by the time a unit frees on ``cfg.latency``
    (``latency_importance.py``)."""
    from ..importance import CRITERIA, score_units

    needs_data = isinstance(importance, str) and importance in CRITERIA and CRITERIA[importance].needs_data
    if is_latency_criterion(importance):  # "<criterion>_latency": per ms freed on the target
        return latency_normalised_scores(graph, importance, cfg.latency, calib_data)
    return score_units(graph, importance, calib=calib_data if needs_data else None)

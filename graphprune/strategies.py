"""Every pruning strategy by name, in one table: what it is, what it needs, how to run it.

``prune(strategy=...)``, the option checks (``options.py``) and the CLI's ``--strategy`` choices all read
:data:`REGISTRY`.  A row is a :class:`Strategy`:

==============  ==========  =======================  ==========================================================
kind            inputs      runs                     where
==============  ==========  =======================  ==========================================================
``allocation``  none        a monotone family of     ``search.allocate.STRATEGIES`` (bisection + fill onto the
                            per-group keep counts    budget, ``allocate_family``)
``search``      eval_fn /   ``Search`` scoring       ``search.registry.SEARCHES`` (``run_search``)
                calib_data  candidate plans
``learner``     train_data  a ``Learner`` class      ``graphprune.learners`` (imported only when run)
==============  ==========  =======================  ==========================================================

This module sits above ``search/`` and ``learners/`` and below ``api.py``; the learners are imported
inside the rows' functions so that importing the search strategies never loads them.  Add a strategy by
writing its implementation in its package's table and a row here (``tests/test_strategies.py`` checks
that the two agree and that the README names every row).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from .budget import Budget
from .depgraph import DependencyGraph
from .search.allocate import STRATEGIES as ALLOCATIONS
from .search.allocate import AllocationConfig, allocate_family
from .search.registry import SEARCHES, run_search

__all__ = ["Strategy", "REGISTRY", "KINDS", "strategy_row", "names_of_kind"]

KINDS = ("allocation", "search", "learner")
EVAL_INPUTS = "eval_fn/calib_data"
TRAIN_INPUTS = "train_data"


@dataclass(frozen=True)
class Strategy:
    """One row of the table.

    Attributes:
        name: what ``prune(strategy=...)`` and ``--strategy`` take.
        kind: ``"allocation"`` (data-free), ``"search"`` (scores candidates) or ``"learner"`` (trains).
        needs: the inputs it cannot run without: ``"eval_fn/calib_data"`` (either) or ``"train_data"``.
        description: one line, for help texts.
        run: the implementation: an allocation family ``(n, scores, graph) -> counts(t)``, a
            ``search.registry.Search``, or (learners) a function importing and returning the ``Learner`` class.
    """

    name: str
    kind: str
    needs: tuple[str, ...]
    description: str
    run: Any

    def check_inputs(self, *, eval_fn: Any = None, calib_data: Any = None, train_data: Any = None,
                     supernet: Any = None) -> None:
        """Raise ``ValueError`` naming the input this strategy needs and lacks, or gets and cannot use."""
        uses_supernet = supernet is not None and supernet is not False
        if uses_supernet and self.kind != "search":
            raise ValueError(f"supernet= changes how candidates are scored; strategy {self.name!r} scores none: "
                             f"use one of {names_of_kind('search')}")
        if uses_supernet and train_data is None:
            raise ValueError("supernet= trains on train_data=...: pass a Dataset or an iterable of batches")
        if TRAIN_INPUTS in self.needs and train_data is None:
            raise ValueError(f"strategy {self.name!r} trains on train_data=...: pass a Dataset of (input, label) "
                             f"(its settings go in search_options)")
        if train_data is not None and TRAIN_INPUTS not in self.needs and not uses_supernet:
            raise ValueError(f"train_data= selects a training-time learner (or, with supernet=, trains a search's "
                             f"supernet); strategy must be one of {names_of_kind('learner')}, got {self.name!r}")
        if EVAL_INPUTS in self.needs and eval_fn is None and calib_data is None:
            raise ValueError(f"strategy {self.name!r} scores candidates: pass eval_fn=... and calib_data=...")

    def choose_keep(self, graph: DependencyGraph, scores: np.ndarray, budget: Budget,
                    cfg: AllocationConfig = AllocationConfig(), *, eval_fn: Callable | None = None,
                    calib_data: Iterable | None = None, options: dict[str, Any] | None = None,
                    supernet: Any = None, train_data: Any = None) -> np.ndarray:
        """Stage 4 for an allocation or a search: the keep mask over ``graph``'s units meeting ``budget``."""
        if self.kind == "allocation":
            return allocate_family(graph, scores, budget, self.run, cfg).keep
        if self.kind == "search":
            return run_search(self.name, graph, scores, budget, cfg, eval_fn=eval_fn, calib_data=calib_data,
                              options=options, supernet=supernet, train_data=train_data).keep
        raise TypeError(f"strategy {self.name!r} is a training-time learner: it chooses while training (learner())")

    def learner(self, options: dict | None = None):
        """A learner row's ``Learner``, configured with ``options`` (its config fields)."""
        if self.kind != "learner":
            raise TypeError(f"strategy {self.name!r} is not a training-time learner")
        return self.run()(**(options or {}))


def _learner_class(module: str, name: str) -> Callable[[], type]:
    """``run`` for a learner row: import ``graphprune.learners.<module>.<name>`` only when asked."""
    def load() -> type:
        return getattr(importlib.import_module(f"graphprune.learners.{module}"), name)
    load.__qualname__ = f"load_{name}"
    return load


def _rows() -> list[Strategy]:
    a, s, le = "allocation", "search", "learner"
    return [
        Strategy("uniform", a, (), "every group keeps the same fraction of its units", ALLOCATIONS["uniform"]),
        Strategy("global", a, (), "one threshold on per-group-normalised importance across all groups",
                 ALLOCATIONS["global"]),
        Strategy("global_raw", a, (), "one threshold on raw importance (criteria already comparable across "
                 "groups, e.g. cost-normalised Group Fisher or '<criterion>_latency')", ALLOCATIONS["global_raw"]),
        Strategy("learned", a, (), "one threshold on raw learned magnitudes: how a learner's mask is projected "
                 "onto the budget (learners/projection.py)", ALLOCATIONS["learned"]),
        Strategy("sensitivity", s, (EVAL_INPUTS,), "per-group sensitivity profile, then threshold bisection",
                 SEARCHES["sensitivity"]),
        Strategy("evolutionary", s, (EVAL_INPUTS,), "genetic search over per-group keep ratios projected onto "
                 "the budget", SEARCHES["evolutionary"]),
        Strategy("rl", s, (EVAL_INPUTS,), "budget-conditioned CACP policy (GCN PruningNet, REINFORCE)",
                 SEARCHES["rl"]),
        Strategy("rate_distortion", s, (EVAL_INPUTS,), "per-group output-distortion curves in cost units, "
                 "allocated at equal slope (Lagrangian, bisected onto the budget)", SEARCHES["rate_distortion"]),
        Strategy("bn-ista", le, (TRAIN_INPUTS,), "ISTA shrinkage of BatchNorm scales while training",
                 _learner_class("ista", "BNIsta")),
        Strategy("slimming", le, (TRAIN_INPUTS,), "Network Slimming: L1 on BatchNorm scales while training",
                 _learner_class("ista", "NetworkSlimming")),
        Strategy("gal", le, (TRAIN_INPUTS,), "generative adversarial learning of soft masks (GAL)",
                 _learner_class("gal", "GAL")),
        Strategy("hsn", le, (TRAIN_INPUTS,), "a hyper-structure network generates the gates (HSN)",
                 _learner_class("hsn", "HSN")),
    ]


REGISTRY: dict[str, Strategy] = {row.name: row for row in _rows()}


def names_of_kind(kind: str) -> list[str]:
    """The names of ``kind``'s rows, in table order."""
    return [name for name, row in REGISTRY.items() if row.kind == kind]


def strategy_row(name: Any) -> Strategy:
    """The row named ``name``; ``TypeError``/``ValueError`` listing the known names by kind otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"strategy must be a strategy name (str), e.g. 'global'; got {type(name).__name__}")
    if name not in REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; data-free: {names_of_kind('allocation')}, searches (with "
                         f"eval_fn=/calib_data=): {names_of_kind('search')}, training-time learners (with "
                         f"train_data=): {names_of_kind('learner')}")
    return REGISTRY[name]

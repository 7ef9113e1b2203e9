"""Argument checks for the public entry points, run before any tracing.

A bad option is refused up front with a message that names the argument, the value given and what is
valid, instead of surfacing as an ``IndexError`` deep in a pass (or, worse, being accepted silently):

1. ``budget``: any real scalar in (0, 1] (float, int, numpy scalar, 0-d tensor) or a ``Budget``
   (``BudgetError`` otherwise, see ``budget.as_ratio``).
2. ``round_to``: an int >= 1, or ``"auto"``; ``min_channels``: an int >= 1; ``max_prune_ratio``: a real
   number in [0, 1] (``ValueError``).
3. ``ignored_layers``: module names; a single string is one name (``"fc"``, not ``['f', 'c']``); ``None``
   means none (``TypeError`` for anything else).  Unknown names are refused later, once the model is traced.
4. ``strategy`` is a name from the table of strategies (``strategies.REGISTRY``), ``importance`` a ``CRITERIA`` name
   or a callable (``TypeError`` / ``ValueError``), checked even at budget 1.0 where neither is used.
5. ``output``: ``"auto"``, ``"module"`` or ``"graph"`` (``ValueError``; ``passes.in_place.OUTPUTS``).
6. The model's parameters and buffers hold data on one device (``model_checks.check_model_tensors``,
   shared with ``apply_plan``, re-exported here).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch

from .budget import Budget, as_budget
from .importance import CRITERIA
from .model_checks import check_apply_plan_args, check_model_tensors
from .strategies import strategy_row

__all__ = ["PruneOptions", "ROUND_TO_AUTO", "check_prune_options", "check_apply_plan_args", "check_model_tensors",
           "as_module_names"]

ROUND_TO_AUTO = "auto"


@dataclass(frozen=True)
class PruneOptions:
    """``prune``'s options after checking, in canonical form."""

    budget: Budget
    round_to: int | str
    min_channels: int
    max_prune_ratio: float
    ignored_layers: tuple[str, ...]
    output: str = "auto"


def check_prune_options(model: Any, budget: Any, *, strategy: Any = "global", importance: Any = "l2",
                        round_to: Any = 1, min_channels: Any = 1, max_prune_ratio: Any = 0.95,
                        ignored_layers: Any = (), output: Any = "auto") -> PruneOptions:
    """Check ``prune``'s arguments (rules 1-6 of the module docstring); return them canonicalised."""
    check_model_tensors(model, "prune")
    b = as_budget(budget)
    _check_strategy_and_importance(strategy, importance)
    return PruneOptions(budget=b, round_to=_round_to(round_to),
                        min_channels=_int_at_least("min_channels", min_channels, 1),
                        max_prune_ratio=_fraction("max_prune_ratio", max_prune_ratio),
                        ignored_layers=as_module_names(ignored_layers), output=_output(output))


def _output(value: Any) -> str:
    from .passes.in_place import OUTPUTS

    if not isinstance(value, str) or value not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS} ('auto': the model's own class when its code allows, "
                         f"else the torch.fx GraphModule), got {value!r:.60}")
    return value


def _check_strategy_and_importance(strategy: Any, importance: Any) -> None:
    """Known names only, even where they would go unused (budget 1.0 searches nothing): a typo is a typo."""
    from .search.latency_importance import is_latency_criterion

    strategy_row(strategy)  # the table of strategies (graphprune.strategies) knows every name
    if callable(importance):
        return
    if not isinstance(importance, str):
        raise TypeError("importance must be a criterion name (str), e.g. 'l2', or a callable fn(graph) -> "
                        f"scores; got {type(importance).__name__}")
    if importance not in CRITERIA and not is_latency_criterion(importance):
        raise ValueError(f"unknown importance {importance!r}; choose one of {sorted(CRITERIA)}, one of them with "
                         "'_latency' appended (divided by the time a unit frees on the target), or pass a callable")


def _round_to(value: Any) -> int | str:
    if isinstance(value, str) and value == ROUND_TO_AUTO:
        return value
    return _int_at_least("round_to", value, 1, also=f" or {ROUND_TO_AUTO!r}")


def _int_at_least(name: str, value: Any, low: int, also: str = "") -> int:
    """``int(value)`` for an integer (not bool) >= ``low``; ValueError naming ``name`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}{also}, got {value!r:.60} ({type(value).__name__})")
    return int(value)


def _fraction(name: str, value: Any) -> float:
    """``float(value)`` for a real number (not bool) in [0, 1]; ValueError naming ``name`` otherwise."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not ok or not (math.isfinite(float(value)) and 0.0 <= float(value) <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1] (fraction of a group's channels), "
                         f"got {value!r:.60} ({type(value).__name__})")
    return float(value)


def as_module_names(ignored_layers: Any) -> tuple[str, ...]:
    """``ignored_layers`` as a tuple of module names: one string is one name; None is none."""
    if ignored_layers is None:
        return ()
    if isinstance(ignored_layers, str):
        return (ignored_layers,)  # NOTE: iterating "fc" would ignore modules 'f' and 'c'
    if not isinstance(ignored_layers, Iterable) or isinstance(ignored_layers, (torch.nn.Module, torch.Tensor)):
        raise TypeError("ignored_layers takes qualified module names, e.g. ['fc'] or 'fc'; "
                        f"got {type(ignored_layers).__name__}")
    names = tuple(ignored_layers)
    for name in names:
        if not isinstance(name, str):
            hint = " (pass its name, e.g. 'fc', not the module)" if isinstance(name, torch.nn.Module) else ""
            raise TypeError("ignored_layers takes qualified module names (strings), e.g. ['fc']; "
                            f"got {type(name).__name__}{hint}")
    return names

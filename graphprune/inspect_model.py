"""A model's dependency graph and cost without pruning it: ``capture`` then ``build_dependency_graph``.

Below every stage that needs a graph of a (possibly edited) model (learners, the conditional search, the
supernet); ``graphprune.api`` re-exports both functions.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from .depgraph import DependencyGraph, build_dependency_graph
from .capture import capture
from .model_checks import check_module_kinds

__all__ = ["inspect", "count_cost"]


def inspect(model: torch.nn.Module, example_inputs: Any, *, leaf_modules: Iterable = (),
            concrete_args: dict | None = None, front_end: str = "auto", attention: str = "auto",
            grouped: str = "auto") -> DependencyGraph:
    """The dependency graph of ``model``: groups, frozen dims with reasons, costs (see ``.summary()``);
    ``front_end``, ``attention`` and ``grouped`` as in ``prune`` (torch.fx first, torch.export when fx cannot
    trace; what a unit of multi-head attention / of a grouped conv is)."""
    if isinstance(model, torch.nn.Module):  # NOTE: refused by name before a copy or trace fails on it
        check_module_kinds(model, "inspect")
    return build_dependency_graph(capture(model, example_inputs, front_end=front_end, leaf_modules=leaf_modules,
                                          concrete_args=concrete_args), attention=attention, grouped=grouped)


def count_cost(model: torch.nn.Module, example_inputs: Any, **trace_kw: Any):
    """MACs (conv, linear, matmul, attention) and parameter count of ``model`` on ``example_inputs``."""
    return inspect(model, example_inputs, **trace_kw).cost()

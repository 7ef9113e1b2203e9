"""The one finishing step every strategy ends in: graph -> handover -> rewrite pipeline -> verify -> report.

``finish(traced, choose)`` builds the dependency graph, asks the strategy for its :class:`Handover`
(``choose(graph)``: an allocation's or a search's keep mask, or a learner's projected mask with the probe
batches for constant folding), and runs the rewrite pipeline (``passes.rewrite``), which verifies every
value's shape.  When a node's pruned form fails verification, the node and the size arithmetic feeding
it are fenced off (frozen, with the reason) and the whole step repeats on the new graph: fail closed,
never a silently wrong model.  ``prune`` (``api.py``) and the learners (``learners/base.py``) both end here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch.fx as fx

from .budget import Budget
from .depgraph import DependencyGraph, build_dependency_graph
from .passes import Handover, RewriteError, rewrite
from .result import PruneReport
from .trace import TracedModel

__all__ = ["MAX_VERIFY_RETRIES", "Finished", "finish", "timed", "fence", "report_of"]

MAX_VERIFY_RETRIES = 16


@dataclass
class Finished:
    """The graph the strategy chose on (after any fencing), what it handed over, and the pruned model."""

    graph: DependencyGraph
    handover: Handover
    model: fx.GraphModule


def timed(seconds: dict[str, float], stage: str, fn: Callable, *args: Any) -> Any:
    """``fn(*args)``, adding its wall time to ``seconds[stage]``."""
    t = time.perf_counter()
    try:
        return fn(*args)
    finally:
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - t


def fence(gm: fx.GraphModule, shapes: dict, node_name: str) -> list[str]:
    """The failing node plus the nodes that read the tensor sizes it was given (``x.size()`` etc.)."""
    nodes = {n.name: n for n in gm.graph.nodes}
    is_tensor = lambda n: n.name in shapes or f"{n.name}#0" in shapes  # noqa: E731
    fenced, stack, seen = [node_name], list(nodes[node_name].all_input_nodes), set()
    while stack:
        n = stack.pop()
        if n.name in seen:
            continue
        seen.add(n.name)
        if is_tensor(n):  # a tensor: stop here
            continue
        fenced.append(n.name)  # size arithmetic or a size read: walk up to the tensors it reads
        stack.extend(n.all_input_nodes)
    return fenced


def finish(traced: TracedModel, choose: Callable[[DependencyGraph], Handover | np.ndarray],
           seconds: dict[str, float] | None = None, max_retries: int = MAX_VERIFY_RETRIES) -> Finished:
    """Stages 2-5 for ``traced`` (module docstring); ``seconds`` collects "dependency_graph" and "rewrite"
    times (``choose`` times its own stages)."""
    seconds = {} if seconds is None else seconds
    forced: dict[str, str] = {}
    for attempt in range(max_retries + 1):
        graph = timed(seconds, "dependency_graph", build_dependency_graph, traced, forced)
        handover = choose(graph)
        handover = handover if isinstance(handover, Handover) else Handover(handover)
        try:
            return Finished(graph, handover, timed(seconds, "rewrite", rewrite, graph, handover))
        except RewriteError as exc:
            # NOTE: fail closed and retry: the node whose pruned form did not check out keeps its channels.
            if exc.node is None or exc.node in forced or attempt == max_retries:
                raise
            why = f"frozen after verification failed: {str(exc).splitlines()[0][:200]}"
            forced.update({name: why for name in fence(traced.gm, traced.shapes, exc.node)})
    raise AssertionError("unreachable")


def report_of(graph: DependencyGraph, keep: np.ndarray, budget: Budget, seconds: dict[str, float],
              dense_graph: DependencyGraph | None = None, **fields: Any) -> PruneReport:
    """The report of ``keep`` on ``graph``; ratios are of ``dense_graph``'s cost (default: ``graph``'s own;
    a learner that removed blocks passes the original model's graph)."""
    dense, cost = (dense_graph or graph).cost(), graph.cost(keep)
    n_pruned = sum(int((~keep[g.units]).any()) for g in graph.groups)
    return PruneReport(budget.ratio, budget.metric, dense.macs, dense.params, cost.macs, cost.params, n_pruned,
                       len(graph.groups), seconds, **fields)

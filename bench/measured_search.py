"""An upper-bound probe for ``bench/latency_macs_target.py``: time shaping with every candidate plan *measured*.

Question it answers: at a fixed MACs budget, how much speed can moving width between groups buy on the target,
when the table's prediction is out of the loop and the importance guards are off?  If even this misses
efficiency 0.9, no reallocation at that MACs ratio reaches it on that runtime (the rest is the runtime:
per-op overhead, activations, how small layers parallelise).

How: ``prune(model, budget, x, target=t)`` runs as usual, but its time-shaping step
(``graphprune.search.time_shaping``, rules in its docstring) is replaced for this one call by a local search
that ranks the one-step narrowings of each group by the table's predicted time freed per MAC, refills each of
the best ``CANDIDATES`` by importance (the allocation's own fill), exports and **measures** each filled plan
whole against the dense model (interleaved, ``REPEATS`` rounds), and moves to the fastest when it is at
least ``MIN_GAIN`` faster than the current plan measured the same way.  The importance guards are off (no
importance slack; each group keeps at least ``MIN_KEPT`` of its importance-allocated width instead of half):
this is a bound, not a plan anyone should ship without checking accuracy.

It patches two attributes of ``graphprune.search.allocate`` for the duration of the call and restores them; it is bench code, not product code.
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from graphprune.latency import Target
from graphprune.latency.runners import measure_ms
from graphprune.passes import rewrite
from graphprune.search.time_shaping import ranked_narrowings

CANDIDATES = 5
MAX_MOVES = 12
MIN_GAIN = 0.01   # of the current plan's measured ratio: below this the moves are within noise
REPEATS = 40      # interleaved rounds per candidate measurement (dense vs candidate)
MIN_KEPT = 0.25


@dataclass
class SearchLog:
    """What the search measured: the starting ratio, each accepted move, and how many plans it timed."""

    start_ratio: float | None = None
    end_ratio: float | None = None
    moves: list[str] = field(default_factory=list)
    measured: int = 0


def measured_prune(model: torch.nn.Module, budget: float, x: torch.Tensor, target: Target) -> tuple:
    """``prune(model, budget, x, target=target)`` with the measured shaping above; returns (module, SearchLog)."""
    import graphprune

    allocate_mod = sys.modules["graphprune.search.allocate"]
    shaping = sys.modules["graphprune.search.time_shaping"]
    log = SearchLog()

    def search(counts, lo, menus, keep_of, time_of, macs_of, importance_of, refill, names, dense_cost):
        graph = search.graph
        cache: dict[bytes, float] = {}

        def measured(keep: np.ndarray) -> float:
            key = keep.tobytes()
            if key not in cache:
                dense_ms, plan_ms = measure_ms([graph.traced.gm, rewrite(graph, keep)], (x,), target,
                                               repeats=REPEATS, sessions=1, max_seconds=None)
                cache[key] = plan_ms / dense_ms
                log.measured += 1
            return cache[key]

        lo = np.maximum(lo, np.ceil(MIN_KEPT * counts).astype(np.int64))
        spend_floor = macs_of(keep_of(counts)) - shaping.SPEND_SLACK * dense_cost
        now = log.start_ratio = measured(keep_of(counts))
        for _ in range(MAX_MOVES):
            best = _best_measured_move(counts, lo, menus, keep_of, time_of, macs_of, refill, measured, spend_floor)
            if best is None or best[2] > now * (1 - MIN_GAIN):
                break
            gi, counts, now = best
            log.moves.append(f"{names[gi]} -> {counts[gi]} ({now:.3f})")
        log.end_ratio = now
        return shaping.ShapingResult(counts, 0.0, 0.0, 0.0, 0.0, log.moves)

    original = allocate_mod._shaped

    def shaped(graph, *args):
        search.graph = graph
        return original(graph, *args)

    with _patched(allocate_mod, "_shaped", shaped), _patched(allocate_mod, "shape_for_time", search):
        pruned = graphprune.prune(model, budget, x, target=target)
    return pruned, log


def _best_measured_move(counts, lo, menus, keep_of, predicted, macs_of, refill, measured, spend_floor):
    """The fastest (measured) of the table's best-ranked one-step narrowings, each refilled by importance."""
    best = None
    ranked = ranked_narrowings(counts, lo, menus, keep_of, predicted, macs_of, predicted(keep_of(counts)))
    for gi, trial in ranked[:CANDIDATES]:
        filled = refill(trial, gi)
        if macs_of(keep_of(filled)) < spend_floor:
            continue
        t = measured(keep_of(filled))
        if best is None or t < best[2]:
            best = (gi, filled, t)
    return best


@contextlib.contextmanager
def _patched(owner, name: str, value):
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)

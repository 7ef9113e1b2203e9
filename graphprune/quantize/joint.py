"""Stage 4 for compression: which channels survive (0 bits or more) and each layer's bit-width, under a budget.

All allocations here read one :class:`JointSpace` — the units of every group ranked by the importance
criterion (so the same criterion decides which channels go to 0 bits), the size / BOPs cost (``cost.py``)
and the budget — and meet the budget by construction: a candidate is decoded through a bisection over a
scale on its keep ratios that lands on the largest feasible keep (costs are monotone in the keep mask).

Kept widths are rounded down to multiples of 16 (groups of 64 units or more; 8 / 4 / exact below, ``width_step``;
``round_to=1`` is exact): the bench found exact widths made pruned models slower than dense ones on ORT's CPU
kernels, and ORT's int8 QLinearConv runs widths in multiples of 16 far faster than multiples of 4 / 8
(pruned MobileNetV2 int8 at size 0.10: 0.27 vs 0.39 of the dense fp32 time, bench/results/joint_quant_int8_speed.md).

* :meth:`JointSpace.uniform` — one keep ratio for every group (prune→quantise, uniform);
* :meth:`JointSpace.global_keep` — one threshold on per-group-normalised scores (prune→quantise, global);
* :func:`joint_search` — the joint search: a genome is a keep ratio per group and a bit-width per layer,
  evolved (tournament of the best half, uniform crossover, Gaussian ratio noise, bit flips) and scored by
  ``evaluate(keep, bits)`` — in ``compress`` the user's ``eval_fn`` on the fake-quant simulation.  The
  prune→quantise allocations seed the population, so the search starts from the baselines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..budget import BudgetError
from ..depgraph import DependencyGraph
from ..search.menus import heuristic_step
from .cost import QuantBudget, QuantCost
from .int4 import Int4Scheme

__all__ = ["JointSpace", "JointConfig", "Candidate", "joint_search", "decode_genome", "width_step"]

INT8_STEP = 16


@dataclass
class Candidate:
    """A decoded point: keep mask over units, bits per layer, its cost and (once scored) its score."""

    keep: np.ndarray
    bits: dict[str, int]
    cost: float
    score: float | None = None

    def key(self) -> tuple:
        return (self.keep.tobytes(), tuple(sorted(self.bits.items())))


class JointSpace:
    """Units ranked per group by ``scores`` (per-group normalised), with the cost and budget of ``graph``."""

    def __init__(self, graph: DependencyGraph, scores: np.ndarray, budget: QuantBudget, min_units: int = 1,
                 round_to: int | str = "auto", int4: Int4Scheme | None = None):
        self.graph, self.budget, self.min_units = graph, budget, min_units
        self.cost = QuantCost(graph, int4)
        self.scores = np.asarray(scores, dtype=np.float64)
        self.order = [g.units.start + np.argsort(-self.scores[g.units], kind="stable") for g in graph.groups]
        self.n = np.array([g.n_units for g in graph.groups])
        self.step = np.array([width_step(int(n), round_to) for n in self.n])
        self.allowed = budget.allowed(self.cost.dense(budget.metric))

    def keep_of(self, ratios: np.ndarray) -> np.ndarray:
        """The top ``ceil(ratio · n)`` units of every group, rounded down to its width step (``width_step``)."""
        return self.keep_of_counts(np.ceil(np.asarray(ratios) * self.n - 1e-9))

    def keep_of_counts(self, counts: np.ndarray) -> np.ndarray:
        """The top ``counts`` units of every group: below ``n``, rounded down to a multiple of the group's
        step (at least one step and ``min_units``) — monotone in ``counts``, so bisections stay valid."""
        counts = np.minimum(np.asarray(counts, dtype=np.int64), self.n)
        rounded = np.where(counts >= self.n, self.n, np.maximum(counts // self.step * self.step, self.step))
        counts = np.clip(rounded, np.minimum(self.min_units, self.n), self.n)
        keep = np.zeros(self.graph.n_units, dtype=bool)
        for order, count in zip(self.order, counts):
            keep[order[:count]] = True
        return keep

    def cost_of(self, keep: np.ndarray, bits: dict[str, int]) -> float:
        return self.cost.of(self.budget.metric, keep, bits)

    def _largest_feasible(self, keep_at: Callable[[float], np.ndarray], bits: dict[str, int]) -> Candidate:
        """Bisection over t in [0, 1] (``keep_at`` grows with t) for the largest keep within the budget."""
        full = keep_at(1.0)
        if self.cost_of(full, bits) <= self.allowed:
            return Candidate(full, dict(bits), self.cost_of(full, bits))
        floor = keep_at(0.0)
        if self.cost_of(floor, bits) > self.allowed:
            raise BudgetError(f"budget {self.budget.describe()} is below the smallest model these bit-widths allow "
                              f"({self.cost_of(floor, bits) / self.cost.dense(self.budget.metric):.3f} of dense, "
                              f"every group at {self.min_units} channel(s)); lower the bits or raise the budget")
        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.cost_of(keep_at(mid), bits) <= self.allowed else (lo, mid)
        keep = keep_at(lo)
        return Candidate(keep, dict(bits), self.cost_of(keep, bits))

    def fit(self, ratios: np.ndarray, bits: dict[str, int]) -> Candidate:
        """Scale ``ratios`` down (one factor for all groups) until the budget holds; the largest such keep."""
        return self._largest_feasible(lambda t: self.keep_of(np.asarray(ratios) * t), bits)

    def uniform(self, bits: dict[str, int]) -> Candidate:
        return self.fit(np.ones(len(self.n)), bits)

    def global_keep(self, bits: dict[str, int]) -> Candidate:
        """Keep the units whose normalised score is at least a threshold (bisected), ``min_units`` per group."""
        normalised = self.scores.copy()
        for g in self.graph.groups:
            top = normalised[g.units].max() if g.n_units else 1.0
            normalised[g.units] /= top if top > 0 else 1.0
        above = lambda t: [(normalised[g.units] >= 1.0 - t).sum() for g in self.graph.groups]  # noqa: E731
        return self._largest_feasible(lambda t: self.keep_of_counts(np.array(above(t))), bits)

    def ratios_of(self, keep: np.ndarray) -> np.ndarray:
        return np.array([keep[g.units].mean() for g in self.graph.groups])


def width_step(n: int, round_to: int | str = "auto") -> int:
    """Kept widths are multiples of this (a group kept whole is exempt).

    ``"auto"``: 16 for groups of at least 64 units (ORT's int8 QLinearConv, measured: module docstring), else
    the pruning heuristic's step (``search.menus.heuristic_step``: 8 / 4 / exact); ``round_to=N``: N; 1: exact.
    """
    if round_to == "auto":
        return INT8_STEP if n >= 4 * INT8_STEP else heuristic_step(n)
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ValueError(f"round_to must be 'auto' or a positive int, got {round_to!r}")
    return min(round_to, n)


@dataclass
class JointConfig:
    """Settings of :func:`joint_search` (``compress(..., search_options={...})``)."""

    population: int = 8
    generations: int = 4
    ratio_sigma: float = 0.12
    bit_flip: float = 0.15
    min_ratio: float = 0.05
    seed: int = 0


def decode_genome(space: JointSpace, ratios: np.ndarray, bits: dict[str, int]) -> Candidate:
    """Decode a genome; while its bits cannot fit even at the floors, fp32 layers drop to int8 (graph order)."""
    bits = dict(bits)
    while True:
        try:
            return space.fit(ratios, bits)
        except BudgetError:
            wide = [name for name, b in bits.items() if b > 8]
            if not wide:
                raise
            bits[wide[0]] = 8


def joint_search(space: JointSpace, evaluate: Callable[[np.ndarray, dict[str, int]], float],
                 bit_choices: tuple[int, ...] | dict[str, tuple[int, ...]] = (8, 32),
                 config: JointConfig | None = None, base_bits: dict[str, int] | None = None
                 ) -> tuple[Candidate, list[Candidate]]:
    """Evolve (keep ratio per group, bit-width per layer).

    Args:
        bit_choices: the bit-widths every layer may take, or a menu per layer name (e.g. int4 for Linear only).
        base_bits: the bits of the seeds and of unflipped layers (default int8 everywhere).

    Returns:
        The best-scored candidate (within the budget, as every decoded one is) and every candidate scored,
        in order.
    """
    config = config or JointConfig()
    rng = np.random.default_rng(config.seed)
    layers = [layer.name for layer in space.cost.layers]
    menu = bit_choices if isinstance(bit_choices, dict) else {name: tuple(bit_choices) for name in layers}
    int8 = dict(base_bits) if base_bits else {name: 8 for name in layers}
    scored: dict[tuple, Candidate] = {}

    def score(c: Candidate) -> Candidate:
        if c.key() not in scored:
            c.score = float(evaluate(c.keep, c.bits))
            scored[c.key()] = c
        return scored[c.key()]

    seeds = [space.uniform(int8), space.global_keep(int8)]
    low = {n: 4 if 4 in menu[n] else b for n, b in int8.items()}  # NOTE: every Linear int4 — a seed of its own
    if low != int8:
        seeds.append(space.global_keep(low))
    genomes = [(space.ratios_of(c.keep), dict(c.bits)) for c in seeds]
    while len(genomes) < config.population:
        ratios = rng.uniform(0.3, 1.0, len(space.n))
        genomes.append((ratios, {n: int(rng.choice(menu[n])) if rng.random() < config.bit_flip else int8[n]
                                 for n in layers}))
    population = [score(decode_genome(space, r, b)) for r, b in genomes]
    for _ in range(config.generations):
        population.sort(key=lambda c: -c.score)
        parents = population[:max(2, config.population // 2)]
        children = []
        for _ in range(config.population - len(parents)):
            a, b = rng.choice(len(parents), 2, replace=False)
            ra, rb = space.ratios_of(parents[a].keep), space.ratios_of(parents[b].keep)
            ratios = np.where(rng.random(len(ra)) < 0.5, ra, rb) + rng.normal(0, config.ratio_sigma, len(ra))
            bits = {n: parents[a].bits[n] if rng.random() < 0.5 else parents[b].bits[n] for n in layers}
            bits = {n: int(rng.choice(menu[n])) if rng.random() < config.bit_flip else v for n, v in bits.items()}
            children.append(score(decode_genome(space, np.clip(ratios, config.min_ratio, 1.0), bits)))
        population = parents + children
    return max(population, key=lambda c: c.score), list(scored.values())

"""Evolutionary search over per-group keep ratios.

Genome: ρ ∈ [ρ_min, 1]^G, one keep ratio per group.  Every genome is first *projected* onto the budget
(``SearchContext.project``: the ratios scaled by a common factor t/(1−t), capped at 1, found by
bisection, then greedy fill), so every candidate meets the budget and the search spends its
evaluations on *shape* (how the budget is split), not on feasibility.  The projected ratios are
written back into the genome (Lamarckian), so parents and children live on the budget surface.

Per generation: evaluate (masked model, BN recalibrated), keep the ``elite`` best, fill the rest with
children of binary-tournament parents: uniform crossover, then Gaussian mutation of log ρ
(σ = ``mutation``).  The first population holds the uniform allocation, the ``global`` allocation and
random genomes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .allocate import allocate
from .search_context import SearchContext, SearchResult

__all__ = ["EvolutionConfig", "evolutionary_search"]


@dataclass(frozen=True)
class EvolutionConfig:
    """Population size, generations, elites kept per generation, mutation σ on log-ratios."""

    population: int = 8
    generations: int = 5
    elite: int = 2
    mutation: float = 0.25
    min_ratio: float = 0.05


def _ratios(ctx: SearchContext, keep: np.ndarray) -> np.ndarray:
    return ctx.counts_of(keep) / np.maximum(ctx.n, 1)


def _seeds(ctx: SearchContext, config: EvolutionConfig, rng: np.random.Generator) -> list[np.ndarray]:
    seeds = [np.ones(len(ctx.n)), _ratios(ctx, allocate(ctx.graph, ctx.scores, ctx.budget, "global", ctx.cfg).keep)]
    while len(seeds) < config.population:
        seeds.append(rng.uniform(config.min_ratio, 1.0, len(ctx.n)))
    return seeds[:config.population]


def _child(a: np.ndarray, b: np.ndarray, config: EvolutionConfig, rng: np.random.Generator) -> np.ndarray:
    child = np.where(rng.random(len(a)) < 0.5, a, b)
    child = np.exp(np.log(np.maximum(child, config.min_ratio)) + rng.normal(0, config.mutation, len(a)))
    return np.clip(child, config.min_ratio, 1.0)


def _tournament(fitness: list[float], rng: np.random.Generator) -> int:
    i, j = rng.integers(len(fitness), size=2)
    return int(i if fitness[i] >= fitness[j] else j)


def evolutionary_search(ctx: SearchContext, config: EvolutionConfig = EvolutionConfig()) -> SearchResult:
    """Best projected genome after ``config.generations`` generations (module docstring)."""
    evaluator = ctx.need_evaluator("evolutionary")
    start, calls = time.perf_counter(), evaluator.calls
    rng = np.random.default_rng(ctx.seed)
    population = _seeds(ctx, config, rng)
    best: tuple[float, np.ndarray, float] | None = None
    history: list[float] = []
    bar = tqdm(total=config.generations * config.population, desc="evolution", disable=not ctx.progress,
               leave=False)
    for _ in range(config.generations):
        allocs = [ctx.project(genome) for genome in population]
        population = [_ratios(ctx, alloc.keep) for alloc in allocs]  # Lamarckian write-back
        # NOTE: the whole generation in one call: a ShardedEvaluator (distributed.py) splits it across processes
        fitness = evaluator.evaluate_many([alloc.keep for alloc in allocs], bar)
        for alloc, score in zip(allocs, fitness):
            history.append(score)
            if best is None or score > best[0]:
                best = (score, alloc.keep, alloc.ratio)
        ranked = np.argsort(fitness)[::-1]
        elites = [population[i] for i in ranked[:config.elite]]
        children = [_child(population[_tournament(fitness, rng)], population[_tournament(fitness, rng)], config, rng)
                    for _ in range(config.population - len(elites))]
        population = elites + children
    bar.close()
    score, keep, ratio = best
    return SearchResult(keep, ratio, score, evaluator.calls - calls, time.perf_counter() - start, history)

"""Candidate evaluation split across ``torch.distributed`` processes: same search, same answer, less wall time.

Every process (rank) runs the *whole* search with the same seed; only the evaluation of a batch of
candidates (``CandidateEvaluator.evaluate_many``: an evolutionary generation, the sensitivity profile) is
split:

1. the candidates not already cached are numbered in order; rank r evaluates numbers r, r + W, r + 2W, …
   (W ranks; candidates cost about the same — the masked model runs at dense cost — so round robin balances);
2. every rank's ``(number, score)`` pairs are all-gathered (``all_gather_object``: gloo on CPU, nccl on GPU);
3. every rank stores all scores in its cache and returns them in the original order.

So every rank sees the same scores, makes the same decisions and ends with the same plan as one process
would: a candidate's score depends only on its keep mask (the masked model is reset from the original
weights and BatchNorm recalibrated per candidate), provided each rank computes with the same number of
threads (``torch.set_num_threads``) as the reference.  Single evaluations (``evaluator(keep)``, e.g. the RL
episodes) run on every rank, unsplit.

Usage, under ``torchrun --nproc_per_node=W script.py``::

    torch.distributed.init_process_group("gloo")
    with graphprune.search.distributed.sharded_evaluation():
        small = graphprune.prune(model, 0.5, x, strategy="evolutionary", calib_data=batches)

Outside the block nothing changes.  With nccl, set each rank's device (``torch.cuda.set_device``) before
the search: ``all_gather_object`` moves its pickles through that device.  ``bench/distributed_search.py``
measures the wall time for 1 and 2 processes and checks that the answers are equal.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch.distributed as dist

__all__ = ["ShardedEvaluator", "sharded_evaluation", "shard_if_active"]

_ACTIVE: list[Any] = []  # process groups of the enclosing sharded_evaluation blocks, innermost last


@contextlib.contextmanager
def sharded_evaluation(group: Any = None) -> Iterator[None]:
    """Within this block, searches (``search.registry.run_search``) split their candidate batches over the
    ranks of ``group`` (default: the world); needs ``torch.distributed.init_process_group`` first."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("sharded_evaluation() needs torch.distributed.init_process_group(...) first (run the "
                           "script with torchrun, backend 'gloo' on CPU or 'nccl' on GPU)")
    _ACTIVE.append(group)
    try:
        yield
    finally:
        _ACTIVE.pop()


def shard_if_active(evaluator: Any) -> Any:
    """``evaluator`` wrapped in a :class:`ShardedEvaluator` inside :func:`sharded_evaluation`, else itself."""
    if evaluator is None or not _ACTIVE or not dist.is_initialized():
        return evaluator
    return ShardedEvaluator(evaluator, _ACTIVE[-1])


def _key(keep: np.ndarray) -> bytes:
    return np.packbits(np.asarray(keep, dtype=bool)).tobytes()


@dataclass
class ShardedEvaluator:
    """A ``CandidateEvaluator`` whose ``evaluate_many`` is split across ranks (module docstring).

    Attributes:
        inner: the evaluator this rank runs.
        calls: evaluations run by all ranks together (what one process would have run); ``seconds``: wall
            time spent in ``evaluate_many`` and single calls on this rank.
    """

    inner: Any
    group: Any = None
    calls: int = 0
    seconds: float = 0.0
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def rank(self) -> int:
        return dist.get_rank(self.group)

    @property
    def world(self) -> int:
        return dist.get_world_size(self.group)

    def __getattr__(self, name: str) -> Any:  # graph, masked, config, model(), ... of the wrapped evaluator
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def caching(self) -> bool:
        return bool(self.inner.config.cache)

    def __call__(self, keep: np.ndarray) -> float:
        """One candidate, evaluated on every rank (no communication)."""
        return self.evaluate_many([keep], sharded=False)[0]

    def evaluate_many(self, keeps: list[np.ndarray], progress: Any = None, sharded: bool = True) -> list[float]:
        """Scores of ``keeps`` in order; the uncached ones split round robin across ranks and all-gathered."""
        import time

        start = time.perf_counter()
        keys = [_key(k) for k in keeps]
        pending: list[int] = []  # first occurrences of the uncached candidates (all of them without a cache)
        seen: set[bytes] = set()
        for i, key in enumerate(keys):
            if not self.caching or (key not in self._cache and key not in seen):
                pending.append(i)
                seen.add(key)
        mine = pending[self.rank::self.world] if sharded else pending
        local = [(i, float(self.inner(keeps[i]))) for i in mine]
        gathered = self._all_gather(local) if sharded else [local]
        scores: dict[int, float] = {}
        for part in gathered:
            for i, score in part:
                scores[i] = score
                if self.caching:
                    self._cache[keys[i]] = score
        self.calls += len(pending)
        out = [scores[i] if i in scores else self._cache[key] for i, key in enumerate(keys)]  # repeats: cache
        if progress is not None:
            progress.update(len(keeps))
        self.seconds += time.perf_counter() - start
        return out

    def _all_gather(self, local: list[tuple[int, float]]) -> list[list[tuple[int, float]]]:
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, local, group=self.group)
        return gathered

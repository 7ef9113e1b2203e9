"""Fast candidate evaluation: score many keep masks on one masked copy of the model.

A search proposes hundreds of keep masks.  Rewriting the model for each one (deep copy, slice every
parameter, verify shapes) costs more than the evaluation itself on small calibration sets, so instead:

1. **build once** and 2. **swap per candidate**: ``MaskedGraph`` (``masked_graph.py``) — one masked copy
   of the traced graph, whose keep masks (and masked parameter copies) are swapped per candidate;
3. **recalibrate BatchNorm** (``recalibrate_bn``): pruning changes the statistics that downstream
   BatchNorms see, so reset their running mean/var and re-estimate them with a cumulative average
   (momentum ``None``) over a few calibration batches, BN layers in train mode, everything else in eval;
4. **score** with the user's ``eval_fn(model) -> float`` (higher is better), e.g.
   ``classification_eval_fn(batches)``.

The masked model computes exactly what the rewritten model computes (``passes.masked_model`` is the
rewrite's oracle), at dense cost; tests hold it to 1e-5 of the rewrite, before and after recalibration.

The same sites double as *gates* for gradient-based importance: ``MaskedGraph.gated`` replaces the
masks by ``g[:, unit]`` for a per-sample gate matrix ``g`` (ones) so that ``∂L_n/∂g[n, u]`` is the
derivative of sample n's loss along the removal of unit u (used by ``importance.group_fisher``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F

from .depgraph import DependencyGraph
from .masked_graph import MaskedGraph, preserves_zeros
from .module_modes import eval_mode
from .trace import normalize_inputs

__all__ = ["MaskedGraph", "preserves_zeros", "recalibrate_bn", "CandidateEvaluator", "EvalConfig", "classification_eval_fn",
           "take_batches"]

Batch = Any  # a tensor, a tuple (inputs..., target) or (inputs, target)


def take_batches(data: Iterable[Batch] | None, n: int | None) -> list[Batch]:
    """The first ``n`` batches of ``data`` (all of them when ``n`` is None), as a list."""
    if data is None:
        return []
    return list(data) if n is None else list(itertools.islice(iter(data), n))


def split_batch(batch: Batch) -> tuple[tuple, Any]:
    """(model inputs, target or None) of a calibration batch: ``x`` or ``(x, y)`` or ``(x1, x2, y)``."""
    if isinstance(batch, torch.Tensor):
        return (batch,), None
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return tuple(batch[:-1]), batch[-1]
    return normalize_inputs(batch), None


def _batch_norms(model: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_bn(model: torch.nn.Module, batches: Iterable[Batch]) -> int:
    """Re-estimate every BatchNorm's running mean/var on ``batches`` (cumulative average); model in eval after.

    Returns the number of BatchNorm layers recalibrated (0 leaves the model untouched).
    """
    norms = _batch_norms(model)
    batches = list(batches)
    if not norms or not batches:
        return 0
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # NOTE: cumulative moving average = exact mean over the calibration batches
        m.train()
    try:
        for batch in batches:
            model(*split_batch(batch)[0])
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return len(norms)


# ---- eval functions ------------------------------------------------------------------------------
def classification_eval_fn(batches: Iterable[Batch], metric: str = "accuracy") -> Callable[[torch.nn.Module], float]:
    """``eval_fn`` for classifiers on held-out ``(inputs, labels)`` batches (materialised once).

    ``metric``: ``"accuracy"`` (top-1, in [0, 1]) or ``"neg_loss"`` (minus mean cross-entropy: smoother,
    a better search signal on small evaluation sets).
    """
    if metric not in ("accuracy", "neg_loss"):
        raise ValueError(f"metric must be 'accuracy' or 'neg_loss', got {metric!r}")
    data = [split_batch(b) for b in batches]
    if not data or any(y is None for _, y in data):
        raise ValueError("classification_eval_fn needs (inputs, labels) batches")

    @torch.no_grad()
    def eval_fn(model: torch.nn.Module) -> float:
        total, value = 0, 0.0
        with eval_mode(model):
            for inputs, labels in data:
                logits = model(*inputs)
                if metric == "accuracy":
                    value += float((logits.argmax(1) == labels).sum())
                else:
                    value -= float(F.cross_entropy(logits, labels, reduction="sum"))
                total += labels.numel()
        return value / max(total, 1)

    return eval_fn


# ---- the evaluator searches call -----------------------------------------------------------------
@dataclass(frozen=True)
class EvalConfig:
    """How candidates are scored.

    Attributes:
        recalibrate: re-estimate BatchNorm statistics on ``calib_batches`` before each evaluation.
        calib_batches: how many calibration batches to use (the first ones of the calibration data).
        cache: remember scores per keep mask (searches revisit candidates).
    """

    recalibrate: bool = True
    calib_batches: int = 4
    cache: bool = True


@dataclass
class CandidateEvaluator:
    """``evaluator(keep) -> float``: ``eval_fn`` of the masked, BN-recalibrated model (higher is better).

    Attributes:
        calls: evaluations actually run (cache hits excluded); ``seconds``: time spent in them.
    """

    graph: DependencyGraph
    eval_fn: Callable[[torch.nn.Module], float]
    calib_data: Iterable[Batch] | None = None
    config: EvalConfig = EvalConfig()
    calls: int = 0
    seconds: float = 0.0
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.masked = MaskedGraph(self.graph)
        self.calib = take_batches(self.calib_data, self.config.calib_batches)
        if self.config.recalibrate and not self.calib and _batch_norms(self.masked.gm):
            raise ValueError("BatchNorm recalibration needs calib_data (an iterable of batches); "
                             "pass calib_data=... or EvalConfig(recalibrate=False)")

    def model(self, keep: np.ndarray) -> fx.GraphModule:
        """The masked (and recalibrated) model for ``keep``; valid until the next call."""
        gm = self.masked.set_keep(keep)
        if self.config.recalibrate:
            recalibrate_bn(gm, self.calib)
        gm.eval()
        return gm

    def __call__(self, keep: np.ndarray) -> float:
        import time

        key = np.packbits(np.asarray(keep, dtype=bool)).tobytes()
        if self.config.cache and key in self._cache:
            return self._cache[key]
        t = time.perf_counter()
        with torch.no_grad():
            score = float(self.eval_fn(self.model(keep)))
        self.seconds += time.perf_counter() - t
        self.calls += 1
        if self.config.cache:
            self._cache[key] = score
        return score

    def evaluate_many(self, keeps: list[np.ndarray], progress: Any = None) -> list[float]:
        """``[self(keep) for keep in keeps]``, one ``progress.update()`` each: the call searches make for a
        whole population, so that ``search.distributed.ShardedEvaluator`` can split it across processes."""
        scores = []
        for keep in keeps:
            scores.append(self(keep))
            if progress is not None:
                progress.update()
        return scores

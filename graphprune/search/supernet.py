"""Supernet option: briefly train the shared weights on sampled sub-networks before the search scores them.

A masked candidate scored on the *original* weights measures how much of the full network survives the
cut; the search wants the ranking of the cut networks after fine-tuning.  Stage-wise pruning and
(Graph) PruningNet close that gap by training the original network as a *supernet*: every step trains a
few randomly sampled sub-networks, all sharing the original weights, to match the full network.

**Step** (one batch x, labels y optional; W the shared weights, W₀ the original ones):

1. teacher logits ``z_T = f(x; W₀)`` of the frozen original full network (eval mode);
2. sub-networks ``k_1..k_S`` sampled the way the searches sample candidates: ``β ~ U(budget_range)``,
   per-group keep ratios ``ρ ~ U(min_ratio, 1)^G``, ``k`` = exact projection of ρ onto β
   (``allocate_family`` + ``ratio_family``, top-k units per group by the search's own scores), plus the
   full network ``k = 1`` when ``sandwich``;
3. ``L = mean_s [ T² · KL(softmax(z_T/T) ‖ softmax(f(x; W ⊙ m(k_s))/T)) + λ_CE · CE(f(x; W ⊙ m(k_s)), y) ]``
   (label-free when ``ce_weight`` = 0 or the batch has no labels);
4. one SGD step on W (cosine learning rate).

The forward of step 3 reuses ``evaluate.MaskedGraph``: the masked copy is built once, and per
sub-network only its mask buffers change (``set_masks``); the parameter masks enter as ``W ⊙ m``
through ``torch.func.functional_call``, so pruned slices get exactly zero gradient and nothing is
rewritten per step.

**BatchNorm.**  In train mode a BN normalises with the batch statistics *of the current sub-network*,
which is what that sub-network computes once rewritten (statistics are per channel; a pruned channel is
all zeros with γ = β = 0 and stays zero).  Running statistics are frozen while training (momentum 0):
a masked channel would feed mean 0 / variance 0 into its running average, and an average over random
sub-networks fits none of them.  The searches re-estimate BN per candidate anyway
(``CandidateEvaluator``); after training, the running statistics are re-estimated for the full network
on ``bn_batches`` training batches (cumulative mean), so the supernet with all masks 1 is a valid model.

**Which weights the pruned model gets.**  ``prune(..., supernet=...)`` uses the supernet *only to choose
the plan*; the pruned model is rewritten from the user's original weights.  NOTE: the supernet's weights
are a compromise shared by every sub-network, trained for a few hundred steps on a small set: they fit
the sampled sub-networks better than the full network and can be worse starting points for the one
network finally fine-tuned (the seed papers fine-tune or retrain the chosen sub-network for many
epochs; ours gets a short fine-tune).  Keeping the original weights also keeps ``prune`` a pure
function of (model, plan): a plan found with the supernet applies to the user's model like any other,
and the benchmark's proxy target (fine-tuned accuracy from the original weights) is the same with and
without the option.  To start from the supernet's weights instead, one line:
``apply_plan(train_supernet(model, x, data, config), plan, x)``.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..budget import Budget, BudgetError
from ..depgraph import DependencyGraph
from ..evaluate import MaskedGraph, recalibrate_bn, split_batch, take_batches
from .allocate import AllocationConfig, allocate_family, ratio_family
from .search_context import SearchContext

__all__ = ["SupernetConfig", "SupernetResult", "SubnetSampler", "as_supernet_config", "fit_supernet",
           "with_weights", "supernet_graph", "train_supernet"]


@dataclass(frozen=True)
class SupernetConfig:
    """Supernet training settings (module docstring).

    Attributes:
        steps: optimiser steps; batch_size: images per step when ``train_data`` is a ``Dataset``.
        lr, momentum, weight_decay: SGD with a cosine decay to 0 over ``steps``.  NOTE: weight decay
            defaults to 0: a masked channel gets no gradient, so decay alone would shrink it while masked.
        budget_range: β of the sampled sub-networks ~ U(lo, hi) (fraction of ``metric`` kept).
        min_ratio: per-group keep ratios are drawn from U(min_ratio, 1) before projection.
        samples: random sub-networks per step; sandwich: also train the full network every step.
        temperature: KD temperature T; ce_weight: weight of the label loss when batches carry labels.
        bn_batches: training batches that re-estimate the full network's BN statistics at the end (0: off).
        metric / importance: cost metric of β and unit scores (which units a group keeps) when
            ``train_supernet`` is called directly; inside a search the search's own are used.
    """

    steps: int = 100
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    budget_range: tuple[float, float] = (0.3, 0.8)
    min_ratio: float = 0.1
    samples: int = 1
    sandwich: bool = True
    temperature: float = 4.0
    ce_weight: float = 0.0
    bn_batches: int = 8
    metric: str = "macs"
    importance: str = "l2"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.budget_range
        if self.steps < 0 or self.samples < 1 or self.lr <= 0 or self.temperature <= 0 or not 0 < lo <= hi <= 1:
            raise ValueError(f"invalid SupernetConfig: {self}")


@dataclass
class SupernetResult:
    """Trained weights (keys of the traced model's ``state_dict``) and the training curve."""

    state: dict[str, torch.Tensor]
    losses: list[float] = field(default_factory=list)  # per step: mean KD loss of the sampled sub-networks
    full_losses: list[float] = field(default_factory=list)  # per step: KD loss of the full network (sandwich)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        head = lambda xs: float(np.mean(xs[:10])) if xs else None
        tail = lambda xs: float(np.mean(xs[-10:])) if xs else None
        return {"steps": len(self.losses), "seconds": self.seconds, "subnet_loss_first10": head(self.losses),
                "subnet_loss_last10": tail(self.losses), "full_loss_last10": tail(self.full_losses)}


def as_supernet_config(supernet: SupernetConfig | bool | dict | None) -> SupernetConfig | None:
    """``True`` -> defaults, a dict -> its fields, ``None``/``False`` -> None (option off)."""
    if supernet is None or supernet is False:
        return None
    if supernet is True:
        return SupernetConfig()
    if isinstance(supernet, dict):
        return SupernetConfig(**supernet)
    if isinstance(supernet, SupernetConfig):
        return supernet
    raise TypeError(f"supernet= takes a SupernetConfig, a dict of its fields or True, got {type(supernet).__name__}")


def _require_data(train_data: Any) -> None:
    if train_data is None:
        raise ValueError("supernet training needs train_data=... (a Dataset or an iterable of batches: x, "
                         "or (x, y) for the optional label loss)")


class SubnetSampler:
    """``sampler() -> keep``: a random sub-network meeting a random β (module docstring, step 2)."""

    def __init__(self, graph: DependencyGraph, scores: np.ndarray, config: SupernetConfig,
                 cfg: AllocationConfig = AllocationConfig()):
        lo, hi = config.budget_range
        self.ctx = SearchContext(graph, scores, Budget(hi, config.metric), cfg, progress=False)
        floor = self.ctx.ratio_of(self.ctx.keep_from_counts(self.ctx.lo))
        if floor > hi:
            raise BudgetError(f"supernet budget_range {config.budget_range} is below what pruning can reach "
                              f"here: {floor:.3f} of {config.metric}")
        # NOTE: budgets below the floor cannot be met; sample from the reachable part of the range
        self.lo, self.hi = max(lo, floor + 1e-6), hi
        self.config, self.cfg = config, cfg
        self.rng = np.random.default_rng(config.seed)

    def __call__(self) -> np.ndarray:
        beta = float(self.rng.uniform(self.lo, self.hi)) if self.hi > self.lo else self.hi
        ratios = self.rng.uniform(self.config.min_ratio, 1.0, len(self.ctx.n))
        return allocate_family(self.ctx.graph, self.ctx.scores, Budget(beta, self.config.metric),
                               ratio_family(ratios), self.cfg).keep


def _batches(train_data: Dataset | Iterable, batch_size: int, seed: int) -> Iterator[Any]:
    """Batches forever: a ``Dataset`` through a seeded shuffling loader, an iterable re-iterated."""
    from ..train import make_loader

    loader = make_loader(train_data, batch_size, seed=seed) if isinstance(train_data, Dataset) else train_data
    epoch = 0
    while True:
        if hasattr(getattr(loader, "sampler", None), "set_epoch"):
            loader.sampler.set_epoch(epoch)
        n = 0
        for batch in loader:
            n += 1
            yield batch
        if n == 0:
            raise ValueError("train_data yielded no batches")
        epoch += 1


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(teacher/T) ‖ softmax(student/T))``, mean over the batch."""
    t = temperature
    return t * t * F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean",
                            log_target=True)


class _Trainer:
    """The masked copy, its parameter masks as names, and the loss of one sub-network on one batch."""

    def __init__(self, graph: DependencyGraph, config: SupernetConfig):
        self.masked = MaskedGraph(graph)
        self.gm, self.config = self.masked.gm, config
        names = {id(p): n for n, p in self.gm.named_parameters()}
        # NOTE: buffers with a prunable dim (BN running mean) are not masked: train-mode BN does not read them
        self.names = [names.get(id(t)) for t in self.masked.param_tensors]

    def logits(self, keep: np.ndarray, inputs: tuple) -> torch.Tensor:
        """The sub-network ``keep``'s output, differentiable in the shared weights (W ⊙ m)."""
        self.masked.set_masks(keep)
        params = dict(self.gm.named_parameters())
        masked = {n: params[n] * m for n, m in zip(self.names, self.masked.param_masks(keep)) if n is not None}
        return torch.func.functional_call(self.gm, masked, inputs)

    def loss(self, keep: np.ndarray, inputs: tuple, labels: torch.Tensor | None,
             teacher: torch.Tensor) -> torch.Tensor:
        logits = self.logits(keep, inputs)
        loss = kd_loss(logits, teacher, self.config.temperature)
        if self.config.ce_weight > 0 and labels is not None:
            loss = loss + self.config.ce_weight * F.cross_entropy(logits, labels)
        return loss


def _freeze_bn_stats(model: nn.Module) -> list[tuple[nn.Module, float | None]]:
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.momentum = 0.0  # NOTE: running = (1 - 0)·running + 0·batch: batch statistics used, never stored
    return saved


def fit_supernet(graph: DependencyGraph, scores: np.ndarray, train_data: Dataset | Iterable,
                 config: SupernetConfig = SupernetConfig(), cfg: AllocationConfig = AllocationConfig()
                 ) -> SupernetResult:
    """Train a masked copy of ``graph``'s traced model as a supernet; ``graph`` itself is not modified.

    Reads: the traced model's weights (teacher and start point), ``scores`` (which units a sub-network
    keeps), ``train_data``.  Returns the trained weights keyed like ``graph.traced.gm.state_dict()``.
    """
    _require_data(train_data)
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    trainer = _Trainer(graph, config)
    teacher = copy.deepcopy(graph.traced.gm).eval()
    sample = SubnetSampler(graph, scores, config, cfg)
    params = [p for p in trainer.gm.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(config.steps, 1))))
    data, full = _batches(train_data, config.batch_size, config.seed), graph.full_keep()
    result = SupernetResult({})
    saved = _freeze_bn_stats(trainer.gm)
    trainer.gm.train()
    try:
        for _ in tqdm(range(config.steps), desc="supernet", disable=not config.progress, leave=False):
            inputs, labels = split_batch(next(data))
            with torch.no_grad():
                target = teacher(*inputs)
            keeps = [sample() for _ in range(config.samples)] + ([full] if config.sandwich else [])
            opt.zero_grad(set_to_none=True)
            losses = []
            for keep in keeps:
                loss = trainer.loss(keep, inputs, labels, target)
                (loss / len(keeps)).backward()
                losses.append(float(loss.detach()))
            opt.step()
            sched.step()
            result.losses.append(float(np.mean(losses[:config.samples])))
            if config.sandwich:
                result.full_losses.append(losses[-1])
    finally:
        for m, momentum in saved:
            m.momentum = momentum
    trainer.masked.set_masks(full)
    if config.bn_batches:
        recalibrate_bn(trainer.gm, take_batches(_batches(train_data, config.batch_size, config.seed + 1),
                                                config.bn_batches))
    keys = graph.traced.gm.state_dict().keys()
    state = trainer.gm.state_dict()
    result.state = {k: state[k].detach().clone() for k in keys}
    result.seconds = time.perf_counter() - start
    return result


def with_weights(graph: DependencyGraph, state: dict[str, torch.Tensor]) -> DependencyGraph:
    """The same dependency graph over a copy of its traced model carrying ``state`` (structure shared)."""
    gm = copy.deepcopy(graph.traced.gm)
    gm.load_state_dict(state)
    other = copy.copy(graph)
    other.traced = replace(graph.traced, gm=gm)
    return other


def supernet_graph(graph: DependencyGraph, scores: np.ndarray, train_data: Dataset | Iterable,
                   config: SupernetConfig, cfg: AllocationConfig = AllocationConfig(),
                   metric: str | None = None) -> tuple[DependencyGraph, SupernetResult]:
    """What a search scores candidates on: ``graph`` with supernet-trained weights (``metric`` overrides)."""
    config = replace(config, metric=metric) if metric is not None else config
    result = fit_supernet(graph, scores, train_data, config, cfg)
    return with_weights(graph, result.state), result


def train_supernet(model: nn.Module, example_inputs: Any, train_data: Dataset | Iterable,
                   config: SupernetConfig | bool | dict = True, graph: DependencyGraph | None = None) -> nn.Module:
    """A new model of ``model``'s class whose weights were trained as a supernet; ``model`` is not modified.

    Args:
        model: the network to train (deep-copied; its weights are the teacher and the start point).
        example_inputs: inputs for tracing (only when ``graph`` is None).
        train_data: a ``Dataset`` or an iterable of batches (``x`` or ``(x, y)``).
        config: a ``SupernetConfig`` (``True``: defaults).
        graph: the dependency graph of ``model`` if already built (``graphprune.inspect``).
    """
    _require_data(train_data)
    config = as_supernet_config(config) or SupernetConfig()
    from ..inspect_model import inspect
    from ..importance import score_units

    graph = graph if graph is not None else inspect(model, example_inputs)
    result = fit_supernet(graph, score_units(graph, config.importance), train_data, config)
    supernet = copy.deepcopy(model)
    unknown = sorted(set(result.state) - set(supernet.state_dict()))
    if unknown:
        raise ValueError(f"graph was not traced from this model: {unknown[:3]} not in its state_dict")
    supernet.load_state_dict(result.state, strict=False)
    supernet.train(model.training)
    return supernet

"""The learner interface: learn *which* units to keep while training, then hand back a plan.

    >>> learner = BNIsta(epochs=2, lam=1e-4)
    >>> plan = learner.fit(model, train_set, budget=0.5, eval_data=test_set)
    >>> learner.result.model            # physically pruned GraphModule (trained weights, gates folded)
    >>> learner.result.projection       # learned ratio, final ratio, units the projection moved

Every learner runs the same pipeline; only the hooks differ:

1. ``inspect`` the model → dependency graph (units, groups, cost terms);
2. ``setup``: a gated copy of the model (:mod:`.gates`) and the learner's own optimisers;
3. ``epochs`` × ``step`` over the training data (progress bar), then per epoch a log record: mean
   losses, sparsity, MACs ratio of the mask learned so far, accuracy on ``eval_data``;
4. ``export``: the trained model with gates folded into constants, a score per unit (gate magnitude),
   the learned keep mask, and structures (blocks, branches) whose mask reached zero;
5. :func:`finalize`: remove those structures (passes ``remove_blocks`` / ``remove_branches`` of the
   rewrite pipeline, each an intermediate model), then the finishing step every strategy ends in
   (:func:`graphprune.finish.finish`): rebuild the graph, carry scores over (:func:`.projection.transfer`),
   project onto the budget when the learned mask misses it (:func:`.projection.project`), and hand the
   mask with the probe batches to the rewrite pipeline, whose pass ``fold_constants`` folds the constant
   channels being removed into their readers' biases; a node whose pruned form fails verification is
   fenced off and the projection repeated; then write the plan;
6. :func:`recalibrate_from_loader` on the pruned network (inside ``finalize``, before the check of :mod:`.revive`
   for a network the learner disconnected): learning moves the scales (ISTA shrinks γ fast, gates
   switch channels off) faster than BatchNorm's running averages follow, so they are re-estimated from
   ``bn_batches`` training batches (forward only, cumulative average).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..budget import Budget, BudgetError, as_budget
from ..depgraph import DependencyGraph
from ..evaluate import recalibrate_bn, take_batches
from ..finish import finish
from ..inspect_model import inspect
from ..passes import Handover, remove_branches, rewrite
from ..passes.fold_constants import FoldReport
from ..passes.remove_block import Block
from ..passes.remove_branch import Branch, check_branch, find_branches
from ..plan import Plan
from ..search import AllocationConfig
from ..trace import normalize_inputs, trace
from ..train import evaluate, make_loader, seed_everything
from .learn_log import LearnLog
from .projection import Projection, project, transfer
from .revive import emptied_groups, is_constant, output_spread, warn_disconnected, with_tiebreak

__all__ = ["LearnerConfig", "Export", "LearnResult", "Learner", "finalize", "recalibrate_from_loader"]

PROBE_BATCHES = 4  # training batches on which removed channels are checked for constancy (fold_constants)


@dataclass(frozen=True)
class LearnerConfig:
    """Settings every learner shares.

    Attributes:
        epochs / steps_per_epoch: learning length (``steps_per_epoch`` caps batches per epoch).
        batch_size, lr, momentum, weight_decay: SGD on the network weights (constant lr while learning).
        seed: seeds everything before the gated copy is made.
        tolerance: a learned mask whose ratio is in ``[β − tolerance, β]`` is used without projection.
        min_units, max_prune_ratio: the allocator's per-group floors, also applied to learned masks.
        eval_batches: cap on evaluation batches per epoch (``None``: all of ``eval_data``).
        bn_batches: training batches used to re-estimate BatchNorm statistics of the result (0: off).
        log_path / plot_path: JSON log (rewritten every epoch) and PNG of MACs and accuracy.
    """

    epochs: int = 1
    steps_per_epoch: int | None = None
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    tolerance: float = 0.02
    min_units: int = 1
    max_prune_ratio: float = 0.95
    eval_batches: int | None = None
    bn_batches: int = 8
    progress: bool = True
    log_path: str | None = None
    plot_path: str | None = None

    def allocation(self) -> AllocationConfig:
        return AllocationConfig(min_units=self.min_units, max_prune_ratio=self.max_prune_ratio)


@dataclass
class Export:
    """What a learner hands to :func:`finalize` (unit arrays index ``source``'s units)."""

    gm: fx.GraphModule
    source: DependencyGraph
    scores: np.ndarray
    learned: np.ndarray
    blocks: list[Block] = field(default_factory=list)
    branches: list[Branch] = field(default_factory=list)
    # pretrained magnitude per unit: breaks ties among units the learner zeroed (:mod:`.revive`)
    tiebreak: np.ndarray | None = None
    # (gm, graph, units) -> values restored: pretrained values back for units of emptied groups
    revive: Callable[[fx.GraphModule, DependencyGraph, np.ndarray], int] | None = None


@dataclass
class LearnResult:
    """The outcome of ``fit``; ``graph`` is the graph ``plan`` is keyed on (the exported model's)."""

    plan: Plan
    model: fx.GraphModule
    graph: DependencyGraph
    projection: Projection
    log: LearnLog
    macs_ratio: float
    removed: dict[str, list] = field(default_factory=dict)


def recalibrate_from_loader(model: nn.Module, loader: DataLoader, batches: int) -> int:
    """``evaluate.recalibrate_bn`` on the first ``batches`` batches of ``loader``; the model's mode is restored.

    Returns the number of BatchNorm layers re-estimated.
    """
    was = model.training
    count = recalibrate_bn(model, take_batches(loader, max(batches, 0)))
    model.train(was)
    return count


def _remove_structures(exp: Export, example: tuple) -> tuple[fx.GraphModule, dict[str, list]]:
    """Block then branch removal, each a rewrite of an intermediate model (traced again after it);
    branches the check refuses stay (their reason is recorded)."""
    gm = exp.gm
    removed = {"blocks": [b.add for b in exp.blocks], "branches": [], "refused": []}
    if exp.blocks:
        graph = inspect(gm, example)
        gm = rewrite(graph, Handover(graph.full_keep(), blocks=list(exp.blocks), carry_state=False))
    if exp.branches:
        graph = inspect(gm, example)
        # NOTE: re-found on the exported graph, whose branches also hold the folded gate constants.
        current = {(b.concat, b.index): b for b in find_branches(graph.traced.gm)}
        ok = []
        for wanted in exp.branches:
            b = current.get((wanted.concat, wanted.index))
            reason = check_branch(graph, b) if b is not None else "no longer a branch (removed with a block?)"
            if reason:
                removed["refused"].append(f"{wanted.concat}[{wanted.index}]: {reason}")
            else:
                ok.append(b)
        if ok:
            gm = remove_branches(graph, ok)
        removed["branches"] = [[b.concat, b.index] for b in ok]
    return gm, removed


@dataclass
class _Projected:
    """What ``finalize``'s choice made of the graph ``finish`` built: scores carried over and the projection."""

    scores: np.ndarray
    projection: Projection


def finalize(exp: Export, budget: Budget, example: tuple, config: LearnerConfig, info: dict,
             calibrate: Callable[[nn.Module], Any] | None = None, probe: list | None = None) -> LearnResult:
    """Steps 5–6 of the module docstring; the result's ratios are of the *original* dense cost.

    ``calibrate`` (step 6) runs on every rewritten network before it is checked for a constant output
    (:mod:`.revive`): stale running statistics can make a live network look constant, or hide a dead one.
    ``probe``: input batches on which the channels being removed are checked for constancy; constant ones
    are folded into their readers' biases (:mod:`graphprune.passes.fold_constants`) so the pruned network
    computes what the learned one did.
    """
    reference = getattr(exp.source.cost(), budget.metric)
    gm, removed = _remove_structures(exp, example)
    chosen: list[_Projected] = []

    def choose(graph: DependencyGraph) -> Handover:
        if not graph.groups:
            raise BudgetError("nothing prunable is left after structure removal")
        scores = transfer(exp.source, exp.scores, graph, default=0.0)
        learned = transfer(exp.source, exp.learned.astype(np.float64), graph, default=1.0) > 0.5
        tiebreak = None if exp.tiebreak is None else transfer(exp.source, exp.tiebreak, graph, default=0.0)
        proj = project(graph, with_tiebreak(scores, tiebreak), learned, budget, config.tolerance, reference,
                       config.allocation())
        chosen.append(_Projected(scores, proj))
        return Handover(proj.keep, fold_batches=probe if probe else None)

    done = finish(trace(gm, example), choose)
    graph, handover, pruned = done.graph, done.handover, done.model
    scores, proj = chosen[-1].scores, chosen[-1].projection  # the choice on done.graph (the last one made)
    calibrate = calibrate or (lambda model: None)
    calibrate(pruned)
    pruned, removed["revived"] = _revive_if_disconnected(exp, graph, scores, handover, pruned, example, calibrate)
    folded = handover.folds or FoldReport()
    plan = Plan.from_keep(graph, proj.keep, budget=budget.ratio, metric=budget.metric, achieved=proj.ratio,
                          removed_blocks=removed["blocks"], removed_branches=removed["branches"],
                          revived_groups=removed["revived"], folded_constants=folded.to_dict(),
                          projection=proj.to_dict(), **info)
    return LearnResult(plan, pruned, graph, proj, None, proj.ratio, removed)


def _revive_if_disconnected(exp: Export, graph: DependencyGraph, scores: np.ndarray, keep: np.ndarray | Handover,
                            pruned: fx.GraphModule, example: tuple,
                            calibrate: Callable[[nn.Module], Any] = lambda model: None,
                            ) -> tuple[fx.GraphModule, list[str]]:
    """Steps 2–4 of :mod:`.revive`: names of the groups revived ([] when none had to be).

    ``keep`` may be the :class:`Handover` ``pruned`` was rewritten from: the network is then rewritten from
    it again, with the same constants folded."""
    handover = keep if isinstance(keep, Handover) else Handover(keep)
    keep = handover.keep
    emptied = emptied_groups(graph, scores, keep)
    if not emptied or not is_constant(output_spread(pruned, example)):
        return pruned, []
    if exp.revive is None:
        warn_disconnected(graph, emptied, "and this learner cannot revive them")
        return pruned, []
    units = np.concatenate([np.arange(graph.n_units)[graph.groups[k].units] for k in emptied])
    exp.revive(graph.traced.gm, graph, units[keep[units]])
    pruned = rewrite(graph, handover)
    calibrate(pruned)
    spread = output_spread(pruned, example)
    if is_constant(spread):
        warn_disconnected(graph, emptied, f"and with their pretrained values back the output still varies by only "
                          f"{spread:.1e} of its scale over random inputs (signal lost elsewhere too)")
    return pruned, [graph.groups[k].name for k in emptied]


class Learner:
    """Base class; subclasses implement ``setup``, ``step``, ``state``, ``network`` and ``export``."""

    name = "learner"
    config_class = LearnerConfig

    def __init__(self, config: LearnerConfig | None = None, **overrides: Any):
        self.config = replace(config or self.config_class(), **overrides)
        self.result: LearnResult | None = None
        self.graph: DependencyGraph | None = None
        self.total_steps = 1  # learning steps of this fit (set before ``setup``)

    # ---- hooks ------------------------------------------------------------------------------
    def setup(self, graph: DependencyGraph, budget: Budget) -> None:
        raise NotImplementedError

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """(score per unit, learned keep mask) as of now."""
        raise NotImplementedError

    def network(self) -> nn.Module:
        """The module to evaluate during learning."""
        raise NotImplementedError

    def export(self) -> Export:
        raise NotImplementedError

    def learned_ratio(self, learned: np.ndarray) -> float:
        return self.graph.cost(learned).macs / self.graph.cost().macs

    # ---- the pipeline -----------------------------------------------------------------------
    def fit(self, model: nn.Module, train_data: Dataset, budget: Budget | float, example_inputs: Any = None,
            eval_data: Dataset | None = None) -> Plan:
        """Learn a plan for ``model`` meeting ``budget``; the details land in ``self.result``."""
        cfg, b = self.config, as_budget(budget)
        seed_everything(cfg.seed)
        example = normalize_inputs(example_inputs if example_inputs is not None else train_data[0][0][None])
        self.graph = inspect(model, example)
        if not self.graph.groups:
            raise BudgetError(f"nothing to prune in {type(model).__name__} (see inspect() for frozen reasons)")
        loader = make_loader(train_data, cfg.batch_size, True, cfg.seed)
        per_epoch = len(loader) if cfg.steps_per_epoch is None else min(len(loader), cfg.steps_per_epoch)
        self.total_steps = max(1, cfg.epochs * per_epoch)
        self.setup(self.graph, b)
        log = LearnLog(self.name, {**asdict(cfg), "budget": b.ratio, "metric": b.metric}, cfg.log_path,
                       cfg.plot_path)
        eval_loader = make_loader(eval_data, 256, False) if eval_data is not None else None
        for epoch in range(1, cfg.epochs + 1):
            start = time.perf_counter()
            losses = self._epoch(loader, epoch)
            _, learned = self.state()
            log.append(epoch, losses, 1.0 - learned.mean(), self.learned_ratio(learned),
                       self._evaluate(eval_loader), time.perf_counter() - start)
        probe = [inputs for _, (inputs, _) in zip(range(PROBE_BATCHES), loader)]
        result = finalize(self.export(), b, example, cfg, {"learner": self.name},
                          calibrate=lambda model: recalibrate_from_loader(model, loader, cfg.bn_batches), probe=probe)
        result.log = log
        log.final = {**result.projection.to_dict(), "macs_ratio": result.macs_ratio, "removed": result.removed,
                     "folded_constants": result.plan.info.get("folded_constants")}
        log.write()
        log.plot()
        self.result = result
        return result.plan

    def _epoch(self, loader: DataLoader, epoch: int) -> dict[str, float]:
        loader.sampler.set_epoch(epoch - 1)
        total = len(loader) if self.config.steps_per_epoch is None else min(len(loader), self.config.steps_per_epoch)
        sums: dict[str, float] = {}
        bar = tqdm(loader, total=total, desc=f"{self.name} {epoch}/{self.config.epochs}", leave=False,
                   disable=not self.config.progress)
        steps = 0
        for inputs, labels in bar:
            if steps >= total:
                break
            for k, v in self.step(inputs, labels).items():
                if not np.isfinite(v):
                    raise FloatingPointError(f"{self.name}: loss '{k}' is {v} at step {steps + 1} of epoch {epoch}; "
                                             "lower the learning rates (lr, mask/sparse/hsn lr)")
                sums[k] = sums.get(k, 0.0) + float(v)
            steps += 1
            bar.set_postfix({k: f"{v / steps:.3g}" for k, v in sums.items()}, refresh=False)
        bar.close()
        return {k: v / max(steps, 1) for k, v in sums.items()}

    @torch.no_grad()
    def _evaluate(self, loader: DataLoader | None) -> float | None:
        if loader is None:
            return None
        return evaluate(self.network(), loader, self.config.eval_batches)

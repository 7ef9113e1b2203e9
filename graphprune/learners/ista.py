"""BN-γ sparsity: ISTA on BatchNorm scales (Ye et al. 2018) and Network Slimming (Liu et al. 2017).

Both train the network with an L1 penalty on the BatchNorm scales γ of every prunable channel::

    min_W,γ  L(W, γ) + λ Σ_c |γ_c|

* **BN-ISTA** (Ye et al., "Rethinking the smaller-norm-less-informative assumption"): γ takes plain
  gradient steps on L (no momentum, no weight decay) followed by the proximal step of λ‖·‖₁::

      γ ← sign(γ) · max(|γ| − η·λ, 0)

  so channels reach **exact** zeros.  A channel with γ = 0 still outputs the constant φ(β); pruning it
  removes a constant input of its readers.  ``finalize`` folds it into the reader's bias where that is
  exact (Linear heads, unpadded convs with a bias: pass :mod:`graphprune.passes.fold_constants`); where
  the reader is a conv followed by BatchNorm, the re-estimation at the end of ``fit`` absorbs it
  (exactly, away from zero-padded borders).  (ResNet-20, β = 0.7, 3 seeds: the learned network and the
  plan applied to it, both re-estimated, differ by ≤ 0.008 in test accuracy.)
  Options: the paper's **γ-W rescaling**: γ, β ← αγ, αβ and the consumers' input columns W ← W/α, which
  leaves the function unchanged where the path between them is positively homogeneous (ReLU, pooling) while
  changing how fast λ zeroes the scales; it is applied per group only where a forward pass confirms the
  function is unchanged (ReLU6 paths, for instance, are refused and recorded), and undone before export.
  ``lam=None`` calibrates λ to the budget and the schedule: with ``T`` steps of size η and ``s*`` the score
  at which ranking the initial scales meets the budget, ``λ = s* / (T·η)``: a scale the loss does not defend
  reaches zero by the last step exactly when it lies below the cut (the loss gradient then decides which
  channels survive).
  NOTE: every scale, kept or not, is shrunk by the same ``s*`` over the schedule.  Where the trained
  scales lie in a narrow band (the Fashion-MNIST ResNet-20: 10–90 % quantiles 0.79–0.86) and ``T`` is
  short, the survivors keep only what the gradient added (16 steps, β = 0.7: median |γ| 0.025, max 0.19),
  so the learned network itself is far from the pretrained one (test accuracy 0.53–0.64 after BN
  re-estimation, before anything is removed).
* **Network Slimming** (baseline): the L1 subgradient ``λ·sign(γ)`` is added to γ's gradient and γ
  trains with the same SGD as the weights; γ never reaches exact zero, so the plan comes from ranking
  |γ| globally against the budget (the "threshold" is the projection of :mod:`.projection`).

A unit is a coupled channel set: its score is ``‖(γ_c)_c‖₂`` over every BN channel in it (residual-coupled
channels have one γ per BN), and it is dropped when all are zero.  **Units with no BatchNorm** (e.g. a conv
feeding a linear directly) get a gate scalar (:mod:`.gates`, initialised to 1) under the same penalty and
the same proximal step; the trained gate is folded into the exported model as a constant.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..budget import Budget
from ..depgraph import DependencyGraph, Dim
from .base import Export, Learner, LearnerConfig
from .gates import GatedModel, attach_gates, materialize
from .projection import project
from .prox import prox_l1_
from .rescale import rescale_groups, undo_rescale

__all__ = ["BNIstaConfig", "BNIsta", "NetworkSlimming", "BNScale", "bn_scales"]


@dataclass(frozen=True)
class BNIstaConfig(LearnerConfig):
    """``lam``: L1 weight λ (None: calibrated to the budget, module docstring); ``sparse_lr``: step size
    of γ and gates (default ``lr``); ``rescale``: the γ-W rescaling factor α (None: off)."""

    lam: float | None = 1e-3
    sparse_lr: float | None = None
    rescale: float | None = None


@dataclass
class BNScale:
    """A BatchNorm with prunable channels: module name and, per channel, its unit (-1: frozen)."""

    module: str
    units: np.ndarray

    @property
    def mask(self) -> torch.Tensor:
        return torch.as_tensor(self.units >= 0)


def bn_scales(graph: DependencyGraph, model: nn.Module) -> list[BNScale]:
    """Every affine BatchNorm of ``model`` whose channels include units of ``graph``."""
    out = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.modules.batchnorm._BatchNorm) or not m.affine:
            continue
        key = graph.param_alias.get(f"@{name}.weight", f"@{name}.weight")
        c = graph.dim_class.get(Dim(key, 0))
        if c is None:
            continue
        units = graph.element_unit[graph.class_offset[c]:graph.class_offset[c] + graph.class_size[c]]
        if (units >= 0).any():
            out.append(BNScale(name, units.copy()))
    return out


class BNIsta(Learner):
    """BN-ISTA learner (module docstring)."""

    name = "bn-ista"
    config_class = BNIstaConfig
    proximal = True

    def setup(self, graph: DependencyGraph, budget: Budget) -> None:
        cfg = self.config
        self.budget = budget
        self.scales = bn_scales(graph, graph.traced.gm)
        self.has_bn = np.zeros(graph.n_units, dtype=bool)
        for s in self.scales:
            self.has_bn[s.units[s.units >= 0]] = True
        self.gated: GatedModel = attach_gates(graph, gated_units=~self.has_bn)
        self.gated.gm.train()
        modules = dict(self.gated.gm.named_modules())
        # NOTE: kept before rescaling and training: the values an emptied group gets back (.revive)
        self.pretrained_bn = {s.module: (modules[s.module].weight.detach().clone(),
                                         modules[s.module].bias.detach().clone()) for s in self.scales}
        self.pretrained_score = self._zeroing_shrinkage()
        self.rescaling = rescale_groups(self.gated, self.scales, cfg.rescale) if cfg.rescale else None
        self.optimizer = self._optimizer()
        self.lam = cfg.lam if cfg.lam is not None else self._calibrated_lambda()

    def _calibrated_lambda(self) -> float:
        """``λ = s* / (T·η)`` with ``s*`` the largest initial score the budget's ranking drops.

        The score here is the shrinkage that zeroes a unit: the element-wise prox removes a unit once the
        accumulated threshold passes its *largest* |γ| (over all its BatchNorms, as the tensors hold them).
        NOTE: the unit's L2 norm (``state``) is larger wherever a unit spans several BatchNorms (residual
        streams, expand + depthwise pairs); calibrating on it zeroed 49 of 52 BatchNorms of MobileNetV2.
        """
        zero_at = self._zeroing_shrinkage()
        keep = project(self.graph, zero_at, np.ones(len(zero_at), dtype=bool), self.budget, 0.0,
                       cfg=self.config.allocation()).keep
        cut = float(zero_at[~keep].max()) if (~keep).any() else 0.0
        return cut / (self.total_steps * (self.config.sparse_lr or self.config.lr))

    def _zeroing_shrinkage(self) -> np.ndarray:
        """Per unit, max |γ| over its BatchNorm channels (|gate| for units without BatchNorm)."""
        largest = np.zeros(self.graph.n_units)
        modules = dict(self.gated.gm.named_modules())
        for s in self.scales:
            gamma = modules[s.module].weight.detach().abs().numpy()
            ok = s.units >= 0
            np.maximum.at(largest, s.units[ok], gamma[ok])
        gates = np.abs(self.gated.unit_gates.values.detach().numpy())
        return np.where(self.has_bn, largest, gates)

    # ---- parameters under the penalty -------------------------------------------------------
    def _sparse(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(tensor, mask of penalised elements): BN scales of units, and gates of units without BN."""
        modules = dict(self.gated.gm.named_modules())
        pairs = [(modules[s.module].weight, s.mask) for s in self.scales]
        pairs.append((self.gated.unit_gates.values, torch.as_tensor(~self.has_bn)))
        return pairs

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        sparse = [t for t, _ in self._sparse()]
        ids = {id(t) for t in sparse}
        rest = [p for p in self.gated.gm.parameters() if id(p) not in ids]
        momentum = 0.0 if self.proximal else cfg.momentum
        return torch.optim.SGD([
            {"params": rest, "lr": cfg.lr, "momentum": cfg.momentum, "weight_decay": cfg.weight_decay},
            {"params": sparse, "lr": cfg.sparse_lr or cfg.lr, "momentum": momentum, "weight_decay": 0.0},
        ])

    def _l1(self) -> float:
        return sum(float(t.detach()[m].abs().sum()) for t, m in self._sparse())

    # ---- one step ---------------------------------------------------------------------------
    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        loss = F.cross_entropy(self.gated.gm(inputs), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not self.proximal:
            self._add_subgradient()
        self.optimizer.step()
        if self.proximal:
            threshold = (self.config.sparse_lr or self.config.lr) * self.lam
            for t, m in self._sparse():
                prox_l1_(t, threshold, m)
        return {"ce": loss.item(), "l1": self.lam * self._l1(), "lam": self.lam}

    @torch.no_grad()
    def _add_subgradient(self) -> None:
        for t, m in self._sparse():
            if t.grad is not None:
                t.grad.add_(self.lam * torch.sign(t) * m)

    # ---- state and export -------------------------------------------------------------------
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        sq = np.zeros(self.graph.n_units)
        modules = dict(self.gated.gm.named_modules())
        for s in self.scales:
            gamma = modules[s.module].weight.detach()
            if self.rescaling is not None and s.module in self.rescaling.bn_factor:
                gamma = gamma / self.rescaling.bn_factor[s.module]
            gamma = gamma.numpy()
            ok = s.units >= 0
            np.add.at(sq, s.units[ok], gamma[ok] ** 2)
        gates = self.gated.unit_gates.values.detach().numpy()
        sq = np.where(self.has_bn, sq, gates ** 2)
        scores = np.sqrt(sq)
        return scores, scores > 0

    def network(self) -> nn.Module:
        return self.gated.gm

    def export(self) -> Export:
        if self.rescaling is not None:
            undo_rescale(self.gated, self.rescaling)
            self.rescaling = None
        scores, learned = self.state()
        return Export(materialize(self.gated), self.graph, scores, learned,
                      tiebreak=self.pretrained_score, revive=self.revive)

    @torch.no_grad()
    def revive(self, gm: nn.Module, graph: DependencyGraph, units: np.ndarray) -> int:
        """Pretrained γ and β back on the BatchNorm channels of ``units`` (of ``graph``, traced from ``gm``).

        Returns the number of channels restored; units without BatchNorm are not revived (their gate
        was folded into a constant).
        """
        restored = 0
        for s in bn_scales(graph, gm):
            saved = self.pretrained_bn.get(s.module)
            bn = gm.get_submodule(s.module)
            if saved is None or saved[0].shape != bn.weight.shape:
                continue
            channels = torch.as_tensor(np.isin(s.units, units) & (s.units >= 0))
            # NOTE: new tensors: a traced module shares its tensors with the model it was traced from
            bn.weight = nn.Parameter(torch.where(channels, saved[0], bn.weight.detach()), bn.weight.requires_grad)
            bn.bias = nn.Parameter(torch.where(channels, saved[1], bn.bias.detach()), bn.bias.requires_grad)
            restored += int(channels.sum())
        return restored


class NetworkSlimming(BNIsta):
    """Network Slimming baseline: L1 subgradient on γ, global threshold at the end (module docstring)."""

    name = "slimming"
    proximal = False


"""GAL — Generative Adversarial Learning of structured sparsity (Lin et al., CVPR 2019).

A soft mask ``m`` scales every structure of the network: each **channel** (one mask per unit, at its
readers, :mod:`.gates`), each **branch** feeding a concat, and each residual **block**'s mapping
(:mod:`graphprune.passes.remove_branch` / :mod:`.remove_block` find them).  The masked network (the
generator) starts from the unpruned weights and learns *without labels*: its logits ``f_g`` must match
the unpruned network's ``f_b``, and fool a discriminator ``D`` (3 FC layers, 128-256-128)::

    L_G(W, m) = ½ E‖f_b − f_g‖²  +  μ · BCE(D(f_g), 1)  +  λ‖m_channel‖₁ + λ_s‖m_structure‖₁
    L_D(θ)    = BCE(D(f_b), 1) + BCE(D(f_g), 0)

``D`` and the generator alternate every batch.  The weights take SGD steps; the masks take **FISTA**
steps (:class:`.prox.FISTA`: proximal L1 with momentum), so masks reach exact zeros: a zero channel
mask drops the unit, a zero branch or block mask removes that structure.  Masks are kept in
``[0, ∞)`` (``nonnegative``): a mask scales a structure and never flips its sign.  Unconstrained,
FISTA's momentum carries a mask that has just reached 0 on to negative values (on ResNet-20 with λ
calibrated to 16 steps, 103 of 336 channel masks ended negative), the unit's score ``|m|`` then ranks a
sign-flipped channel as kept, and zeros are rarely exact.  Ablations: ``mask_optimizer=
"sgd"`` (L1 subgradient, no exact zeros: channels are thresholded by the budget projection, structures
by ``sgd_threshold``), ``adversarial=False`` (data term only).

``lam=None`` calibrates λ to the schedule: the smallest λ with which a mask that the loss does not defend
(∇ = 0) goes from 1 to exact zero within the ``T`` learning steps (:func:`.prox.calibrate_l1`, FISTA's
momentum included); masks the loss defends survive.
NOTE: this λ does not depend on the budget — the learned mask is the same for every β and the projection
does the budget's work — and on a short schedule the loss barely defends anything: on the Fashion-MNIST
ResNet-20 with ``T`` = 16 the channel masks at step 12 spread over only 0.37–0.41 (10–90 %) while the prox
had moved them by 0.6, and at the end every surviving channel and block mask is ≈ 0.1–0.3, so the
generator's logits drift far from the teacher's (MSE 5 → 29 in the last four steps).

Structure removal is guarded so the plan stays within the budget window: zero-mask structures are
removed in graph order only while the dense-channel cost after removal stays ≥ (β − tolerance);
the channel projection then meets the budget.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..budget import Budget
from ..depgraph import DependencyGraph
from ..passes.remove_block import Block, find_blocks
from ..passes.remove_branch import Branch, branch_units, check_branch, find_branches
from .base import Export, Learner, LearnerConfig
from .gates import Structure, attach_gates, materialize
from .prox import FISTA, calibrate_l1

__all__ = ["GALConfig", "GAL", "Discriminator"]


@dataclass(frozen=True)
class GALConfig(LearnerConfig):
    """``lam``/``lam_structure``: L1 weights of channel and structure masks (None: calibrated, see the
    module docstring); ``mask_lr`` / ``structure_lr``: their steps (default ``mask_lr / 10``: a block's
    output moves the logits far more than one channel's); ``restart``: FISTA adaptive restart; ``adv_weight``: μ; ``d_lr``: Adam step of D;
    ``structures``: which of channel/branch/block to mask; ``nonnegative``: masks in ``[0, ∞)``
    (module docstring)."""

    lam: float | None = None
    lam_structure: float | None = None
    mask_lr: float = 0.05
    structure_lr: float | None = None
    restart: bool = True
    mask_optimizer: str = "fista"
    sgd_threshold: float = 0.05
    adversarial: bool = True
    adv_weight: float = 0.1
    d_lr: float = 1e-3
    structures: tuple[str, ...] = ("channel", "branch", "block")
    nonnegative: bool = True


class Discriminator(nn.Module):
    """Three hidden FC layers (128-256-128, ReLU) and a logit: is this the unpruned network's output?"""

    def __init__(self, n_in: int, widths: tuple[int, ...] = (128, 256, 128)):
        super().__init__()
        layers, prev = [], n_in
        for w in widths:
            layers += [nn.Linear(prev, w), nn.ReLU()]
            prev = w
        self.net = nn.Sequential(*layers, nn.Linear(prev, 1))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.net(logits).squeeze(1)


def _bce(logit: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, target))


class GAL(Learner):
    """GAL learner (module docstring)."""

    name = "gal"
    config_class = GALConfig

    def setup(self, graph: DependencyGraph, budget: Budget) -> None:
        cfg = self.config
        if cfg.mask_optimizer not in ("fista", "sgd"):
            raise ValueError(f"mask_optimizer must be 'fista' or 'sgd', got {cfg.mask_optimizer!r}")
        self.budget = budget
        self.teacher = copy.deepcopy(graph.traced.gm).eval().requires_grad_(False)
        self.blocks, self.branches = self._find_structures(graph)
        structures = [Structure("block", b.add, b.mapping) for b in self.blocks] + \
                     [Structure("branch", b.concat, b.index) for b in self.branches]
        channels = np.full(graph.n_units, "channel" in cfg.structures)
        self.gated = attach_gates(graph, gated_units=channels, structures=structures)
        self.gated.gm.train()
        self.masks = [self.gated.unit_gates.values] if channels.any() else []
        self.struct_mask = self.gated.structure_gates.values if structures else None
        self._optimizers(graph)

    def _find_structures(self, graph: DependencyGraph) -> tuple[list[Block], list[Branch]]:
        gm, kinds = graph.traced.gm, self.config.structures
        blocks = find_blocks(gm) if "block" in kinds else []
        branches = [b for b in find_branches(gm) if not check_branch(graph, b)] if "branch" in kinds else []
        return blocks, branches

    def _optimizers(self, graph: DependencyGraph) -> None:
        cfg = self.config
        mask_ids = {id(self.gated.unit_gates.values)} | ({id(self.struct_mask)} if self.struct_mask is not None else set())
        weights = [p for p in self.gated.gm.parameters() if id(p) not in mask_ids]
        self.opt_w = torch.optim.SGD(weights, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        fista = cfg.mask_optimizer == "fista"
        s_lr = cfg.structure_lr if cfg.structure_lr is not None else cfg.mask_lr / 10
        lam = cfg.lam if cfg.lam is not None else calibrate_l1(1.0, self.total_steps, cfg.mask_lr, fista)
        s_lam = cfg.lam_structure if cfg.lam_structure is not None else \
            calibrate_l1(1.0, self.total_steps, s_lr, fista)
        groups = [{"params": self.masks, "lam": lam, "lr": cfg.mask_lr}] if self.masks else []
        if self.struct_mask is not None:
            groups.append({"params": [self.struct_mask], "lam": s_lam, "lr": s_lr})
        self.opt_m = None
        if groups:
            self.opt_m = FISTA(groups, lr=cfg.mask_lr, lam=lam, restart=cfg.restart,
                                nonnegative=cfg.nonnegative) if fista else \
                torch.optim.SGD(groups, lr=cfg.mask_lr)
        with torch.no_grad():
            n_out = self.teacher(*graph.traced.example_inputs).shape[-1]
        self.disc = Discriminator(n_out)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.d_lr)

    # ---- one step ---------------------------------------------------------------------------
    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            target = self.teacher(inputs)
        out = self.gated.gm(inputs)
        losses = {"d": self._discriminator_step(target, out.detach())} if self.config.adversarial else {}
        mse = 0.5 * ((out - target) ** 2).sum(dim=1).mean()
        adv = _bce(self.disc(out), 1.0) if self.config.adversarial else torch.zeros(())
        loss = mse + self.config.adv_weight * adv
        self.opt_w.zero_grad(set_to_none=True)
        if self.opt_m is not None:
            self.opt_m.zero_grad(set_to_none=True)
        loss.backward()
        self._mask_step()
        self.opt_w.step()
        return {**losses, "mse": mse.item(), "adv": adv.item(), "l1": self._l1()}

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        loss = _bce(self.disc(real), 1.0) + _bce(self.disc(fake), 0.0)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return loss.item()

    def _mask_step(self) -> None:
        if self.opt_m is None:
            return
        if self.config.mask_optimizer == "sgd":  # L1 subgradient; FISTA applies the prox itself
            with torch.no_grad():
                for group in self.opt_m.param_groups:
                    for p in group["params"]:
                        if p.grad is not None:
                            p.grad.add_(group["lam"] * torch.sign(p))
        self.opt_m.step()
        if self.config.mask_optimizer == "sgd" and self.config.nonnegative:
            with torch.no_grad():
                for group in self.opt_m.param_groups:
                    for p in group["params"]:
                        p.clamp_(min=0.0)

    def _l1(self) -> float:
        return sum(float(self._current(p).abs().sum()) for p in self.masks + ([self.struct_mask] if
                                                                              self.struct_mask is not None else []))

    def _current(self, p: torch.Tensor) -> torch.Tensor:
        return self.opt_m.iterate(p) if isinstance(self.opt_m, FISTA) else p.detach()

    # ---- state and export -------------------------------------------------------------------
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        values = self._current(self.gated.unit_gates.values).abs().numpy().astype(np.float64)
        if not self.masks:
            return np.ones(self.graph.n_units), np.ones(self.graph.n_units, dtype=bool)
        exact = self.config.mask_optimizer == "fista"
        return values, values > 0 if exact else np.ones(len(values), dtype=bool)

    def zero_structures(self) -> list[Block | Branch]:
        """Blocks and branches whose mask is (exactly, or below ``sgd_threshold``) zero, in graph order."""
        if self.struct_mask is None:
            return []
        m = self._current(self.struct_mask).abs().numpy()
        cut = 0.0 if self.config.mask_optimizer == "fista" else self.config.sgd_threshold
        return [s for s, v in zip(self.blocks + self.branches, m) if v <= cut]

    def learned_ratio(self, learned: np.ndarray) -> float:
        return self._ratio_without(learned, self.zero_structures())

    def _ratio_without(self, keep: np.ndarray, removed: list) -> float:
        """Cost ratio of ``keep`` with the nodes of ``removed`` structures gone (a branch's concat channels
        dropped too, so its consumers' input columns go)."""
        gone = {n for s in removed for n in s.private}
        keep = keep.copy()
        for s in removed:
            if isinstance(s, Branch):
                keep[branch_units(self.graph, s)] = False
        macs = sum(v for node, v in self.graph.node_macs(keep).items() if node not in gone)
        return (macs + self.graph.unmodeled_macs) / self.graph.cost().macs

    def _guarded(self, zero: list) -> list:
        """Zero structures to remove: in graph order, while the cost stays ≥ β − tolerance and every
        concat keeps an operand."""
        floor = self.budget.ratio - self.config.tolerance
        dense, chosen = self.graph.full_keep(), []
        nodes = {n.name: n for n in self.graph.traced.gm.graph.nodes}
        for s in zero:
            if isinstance(s, Branch):
                taken = sum(1 for c in chosen if isinstance(c, Branch) and c.concat == s.concat)
                if taken + 1 >= len(nodes[s.concat].args[0]):
                    continue
            if self._ratio_without(dense, chosen + [s]) >= floor:
                chosen.append(s)
        return chosen

    def network(self) -> nn.Module:
        return self.gated.gm

    def export(self) -> Export:
        removed = self._guarded(self.zero_structures())
        if isinstance(self.opt_m, FISTA):
            self.opt_m.finalize()
        scores, learned = self.state()
        return Export(materialize(self.gated), self.graph, scores, learned,
                      blocks=[s for s in removed if isinstance(s, Block)],
                      branches=[s for s in removed if isinstance(s, Branch)])

"""HSN — a hyper-structure network that emits the gates of a frozen network.

A small GRU walks the dependency graph's groups in graph order; at group ``l`` it reads a fixed random
embedding ``e_l`` and its head emits one logit per unit, ``z_l = H_l(GRU(e_1..e_l))``.  Gates are
Gumbel-sigmoid samples with a straight-through hard threshold::

    s = σ((z + log u − log(1 − u)) / τ),  u ~ U(0, 1);      g = 1[s > ½] + s − stop_grad(s)

The main network is frozen (eval mode, no weight updates); only the HSN learns, from

    L = T(g) + λ · R(p),    R(p) = log²( MACs(p) / (β · MACs_dense) ),    p = σ(z)

``T`` is the task loss (cross-entropy, or KD from the unpruned network with ``kd_alpha`` > 0) and
``MACs(p)`` the differentiable cost of :mod:`.cost` (expected class sizes = sums of gate probabilities).

**Layer-wise scaling factors.**  The regulariser's gradient on group ``l``'s logits is scaled by
``α_l`` (init 1): the update is ``∇_z T + α_l ∇_z λR``.  The α are learned by hyper-gradient descent
(Baydin et al. 2018): with ``z_t = z_{t−1} − η(∇T_{t−1} + α∇R_{t−1})``,
``∂T(z_t)/∂α_l = −η ⟨∇_{z_l}T_t, ∇_{z_l}R_{t−1}⟩``, so descending it gives::

    α_l ← max(0, α_l + β_h · cos(∇_{z_l} T_t, ∇_{z_l} R_{t−1}))

(the cosine instead of the raw product makes β_h scale-free).  Where the task gradient now agrees with
the last regularisation step, group ``l`` takes more of the pruning pressure; where they conflict, less.

The learned mask is ``p > ½``; the plan projects it onto the budget by ranking ``p`` when it misses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ..budget import Budget
from ..depgraph import DependencyGraph
from ..train import distillation_loss
from .base import Export, Learner, LearnerConfig
from .cost import CostModel
from .gates import attach_gates, materialize

__all__ = ["HSNConfig", "HSN", "HyperStructureNetwork", "gumbel_sigmoid"]


@dataclass(frozen=True)
class HSNConfig(LearnerConfig):
    """``hidden``: GRU width; ``hsn_lr``: Adam step; ``reg_weight``: λ; ``tau``: Gumbel temperature;
    ``init_logit``: initial gate logit (σ(3) ≈ 0.95: start from the full network); ``hyper_lr``: β_h."""

    hidden: int = 64
    hsn_lr: float = 1e-2
    reg_weight: float = 2.0
    tau: float = 0.5
    init_logit: float = 3.0
    hyper_lr: float = 0.05
    kd_alpha: float = 0.0
    kd_temperature: float = 4.0


def gumbel_sigmoid(logits: torch.Tensor, tau: float, hard: bool = True) -> torch.Tensor:
    """Relaxed Bernoulli sample (module docstring); straight-through 0/1 values when ``hard``."""
    u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
    soft = torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / tau)
    return (soft > 0.5).to(soft.dtype) + soft - soft.detach() if hard else soft


class HyperStructureNetwork(nn.Module):
    """GRU over groups; one linear head per group emits that group's unit logits."""

    def __init__(self, sizes: list[int], hidden: int = 64, init_logit: float = 3.0):
        super().__init__()
        self.register_buffer("inputs", torch.randn(len(sizes), hidden))
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in sizes)
        with torch.no_grad():
            for head in self.heads:
                head.weight.mul_(0.1)
                head.bias.fill_(init_logit)

    def forward(self) -> list[torch.Tensor]:
        states, _ = self.gru(self.inputs.unsqueeze(0))
        return [head(states[0, i]) for i, head in enumerate(self.heads)]


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    denom = float(a.norm() * b.norm())
    return float((a * b).sum()) / denom if denom > 0 else 0.0


class HSN(Learner):
    """HSN learner (module docstring)."""

    name = "hsn"
    config_class = HSNConfig

    def setup(self, graph: DependencyGraph, budget: Budget) -> None:
        cfg = self.config
        self.budget = budget
        self.gated = attach_gates(graph)
        self.gated.gm.eval().requires_grad_(False)  # NOTE: the main network is frozen
        self.hsn = HyperStructureNetwork([g.n_units for g in graph.groups], cfg.hidden, cfg.init_logit)
        self.optimizer = torch.optim.Adam(self.hsn.parameters(), lr=cfg.hsn_lr)
        self.cost = CostModel(graph, budget.metric)
        self.alpha = torch.ones(len(graph.groups))
        self.alpha_history: list[list[float]] = []
        self._prev_reg: list[torch.Tensor] | None = None

    def regulariser(self, p: torch.Tensor) -> torch.Tensor:
        """``λ · log²(cost(p) / (β · dense))``."""
        return self.config.reg_weight * torch.log(self.cost.ratio(p) / self.budget.ratio) ** 2

    def _task(self, inputs: torch.Tensor, labels: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        teacher = None
        if cfg.kd_alpha > 0:
            self.gated.unit_gates.override = None
            with torch.no_grad():
                teacher = self.gated.gm(inputs)
        self.gated.unit_gates.override = gates
        out = self.gated.gm(inputs)
        return distillation_loss(out, labels, teacher, cfg.kd_alpha, cfg.kd_temperature)

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        logits = self.hsn()
        flat = torch.cat(logits)
        task = self._task(inputs, labels, gumbel_sigmoid(flat, self.config.tau))
        reg = self.regulariser(torch.sigmoid(flat))
        g_task = torch.autograd.grad(task, logits, retain_graph=True)
        g_reg = torch.autograd.grad(reg, logits, retain_graph=True)
        self._hyper_step(g_task)
        combined = [gt + a * gr for gt, gr, a in zip(g_task, g_reg, self.alpha)]
        self.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(logits, combined)
        self.optimizer.step()
        self._prev_reg = [g.detach() for g in g_reg]
        self.gated.unit_gates.override = None
        return {"task": task.item(), "reg": reg.item(), "alpha_mean": float(self.alpha.mean())}

    def _hyper_step(self, g_task: tuple[torch.Tensor, ...]) -> None:
        """α_l ← max(0, α_l + β_h · cos(∇T_t, ∇R_{t−1})) per group (module docstring)."""
        if self._prev_reg is None:
            return
        h = torch.tensor([_cosine(gt, gr) for gt, gr in zip(g_task, self._prev_reg)])
        self.alpha = torch.clamp(self.alpha + self.config.hyper_lr * h, min=0.0)
        self.alpha_history.append(self.alpha.tolist())

    # ---- state and export -------------------------------------------------------------------
    @torch.no_grad()
    def probabilities(self) -> np.ndarray:
        return torch.sigmoid(torch.cat(self.hsn())).numpy().astype(np.float64)

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        p = self.probabilities()
        return p, p > 0.5

    def network(self) -> nn.Module:
        self.gated.unit_gates.override = torch.as_tensor(self.state()[1], dtype=torch.float32)
        return self.gated.gm

    def export(self) -> Export:
        scores, learned = self.state()
        self.gated.unit_gates.override = None  # kept units run at full scale; dropped ones are pruned
        self.gated.gm.requires_grad_(True)  # NOTE: frozen only while the HSN learns; the result fine-tunes
        return Export(materialize(self.gated), self.graph, scores, learned)

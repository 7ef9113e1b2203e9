"""PruningNet: a GCN over the layer graph whose node embeddings are the agent's states.

    h = GCN₂(ReLU(GCN₁(X_β, A)))                         (torch_geometric ``GCNConv``, self-loops added)
    (a_l, b_l) = 1 + softplus(MLP([h_l, z_l]))            z_l: the step's dynamic state (below)
    x_l ~ Beta(a_l, b_l),  x_l ∈ (0, 1)                   the *desired* keep fraction of group l

With a rule prior p_l (``reward.rule_prior``: the keep fraction a hand-made rule gives group l at β), the
head is a residual around the rule instead:  μ_l = σ(logit p_l + o₁ − 1),  κ_l = κ₀·exp(o₂ − 1),
x_l ~ Beta(μ_l κ_l, (1 − μ_l) κ_l).  The head starts at o = (1, 1) (its bias), i.e. at the rule's plan
with concentration κ₀ (std ≈ √(μ(1−μ)/(κ₀+1)): 0.1 at μ = 0.5 for κ₀ = 24), so episodes explore around it.

X_β are the static node features with the budget column set to β, so the embeddings — and the whole
policy — are conditioned on the budget (CACP).  z_l carries what the static graph cannot know: the
step's position, the cost committed so far, and the bounds the budget imposes on this step (see
``cacp.py``).  A Beta distribution fits a bounded ratio; its mean ``a/(a+b)`` is the greedy action.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["PruningNet", "DYNAMIC_FEATURES"]

DYNAMIC_FEATURES = ("step", "committed", "lower_bound", "upper_bound", "budget")


class PruningNet(nn.Module):
    """GCN encoder + per-step Beta head (module docstring)."""

    def __init__(self, n_features: int, hidden: int = 64):
        super().__init__()
        from torch_geometric.nn import GCNConv  # NOTE: heavy optional dependency, imported only here

        self.gcn1 = GCNConv(n_features, hidden)
        self.gcn2 = GCNConv(hidden, hidden)
        self.head = nn.Sequential(nn.Linear(hidden + len(DYNAMIC_FEATURES), hidden), nn.Tanh(), nn.Linear(hidden, 2))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.constant_(self.head[-1].bias, 1.0)  # start near Beta(2.3, 2.3): centred, broad

    def embed(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.gcn2(F.relu(self.gcn1(x, edge_index)), edge_index)

    def distribution(self, h: torch.Tensor, z: torch.Tensor, prior: float | None = None,
                     concentration: float = 24.0) -> torch.distributions.Beta:
        """Beta over the desired keep fraction; around ``prior`` (a rule's fraction) when given (docstring)."""
        out = self.head(torch.cat([h, z], -1))
        if prior is None:
            a, b = (1.0 + F.softplus(out)).unbind(-1)
            return torch.distributions.Beta(a, b)
        p = min(max(float(prior), 0.02), 0.98)  # NOTE: a rule at the floor or at full width stays reachable
        mu = torch.sigmoid(out[..., 0] - 1.0 + float(np.log(p / (1 - p))))
        kappa = concentration * torch.exp(out[..., 1] - 1.0)
        return torch.distributions.Beta(mu * kappa, (1 - mu) * kappa)

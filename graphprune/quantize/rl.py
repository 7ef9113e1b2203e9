"""The hierarchical RL controller of the joint search (AJPQ-style), on the GCN PruningNet's node embeddings.

    h = PruningNet.embed(X_β, A)                      one embedding per prunable group (``search/policy.py``,
                                                      ``search/layer_graph.py``; β = the size / BOPs ratio)
    layer controller:    r_g ~ Beta(a_g, b_g)         keep ratio of group g   (PruningNet's Beta head)
    channel controller:  p_l = σ(w · h_{g(l)} + c)    probability that layer l stays fp32, else int8

``g(l)`` is the group holding layer ``l``'s output channels (the mean embedding for a layer whose outputs
no group prunes, e.g. a classifier).  A rollout decodes through ``JointSpace.fit`` — one factor scales
every ratio down until the budget holds — so every plan meets the budget by construction, and the channels
each group drops are its lowest-importance ones (the criterion decides who gets 0 bits).  Reward R =
``evaluate(keep, bits)`` (in ``compress``: ``eval_fn`` on the fake-quant simulation).  Training: REINFORCE,
``−(Σ log π(r_g) + Σ log π(bit_l)) · (R − b)``, ``b`` an exponential moving average of R, Adam; the answer
is the best candidate scored (greedy rollouts included), never worse than the prune→quantise seeds, which
are scored first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from ..depgraph import Dim
from ..search.layer_graph import FEATURES, layer_graph
from ..search.policy import DYNAMIC_FEATURES, PruningNet
from .joint import Candidate, JointSpace, decode_genome

__all__ = ["RLJointConfig", "rl_joint_search"]


@dataclass(frozen=True)
class RLJointConfig:
    """Settings of :func:`rl_joint_search` (``compress(..., strategy="rl", search_options={...})``)."""

    episodes: int = 16
    batch_episodes: int = 4
    hidden: int = 32
    lr: float = 3e-3
    baseline_momentum: float = 0.8
    seed: int = 0


class _BitHead(nn.Module):
    """Channel controller: an fp32-vs-int8 logit per layer from its group's embedding."""

    def __init__(self, hidden: int):
        super().__init__()
        self.linear = nn.Linear(hidden, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.constant_(self.linear.bias, -1.5)  # start mostly int8: fp32 layers are expensive in size

    def forward(self, h: torch.Tensor) -> torch.distributions.Bernoulli:
        return torch.distributions.Bernoulli(logits=self.linear(h).squeeze(-1))


def _layer_groups(space: JointSpace) -> list[int]:
    """Index of the group owning each layer's output channels, or -1."""
    owner = {}
    for i, g in enumerate(space.graph.groups):
        for d in g.members:
            owner[d] = i
    return [owner.get(Dim(layer.weight_key, 0), -1) for layer in space.cost.layers]


class _Controller:
    def __init__(self, space: JointSpace, config: RLJointConfig, bit_choices: tuple[int, ...]):
        torch.manual_seed(config.seed)
        self.space, self.config, self.mixed = space, config, 32 in bit_choices
        self.layers = layer_graph(space.graph, space.scores)
        self.net = PruningNet(len(FEATURES), config.hidden)
        self.bits_head = _BitHead(config.hidden)
        self.owner = _layer_groups(space)
        self.ratio = space.allowed / space.cost.dense(space.budget.metric)
        params = list(self.net.parameters()) + list(self.bits_head.parameters())
        self.optimizer = torch.optim.Adam(params, lr=config.lr)

    def rollout(self, greedy: bool) -> tuple[Candidate, torch.Tensor]:
        h = self.net.embed(self.layers.with_budget(self.ratio), self.layers.edge_index)
        n = len(self.space.n)
        z = torch.zeros(n, len(DYNAMIC_FEATURES))
        z[:, 0] = torch.arange(n) / max(n, 1)
        z[:, -1] = (self.ratio - 0.5) * 4
        keep_dist = self.net.distribution(h, z)
        ratios = (keep_dist.mean if greedy else keep_dist.sample()).clamp(0.02, 1 - 1e-4)
        logp = keep_dist.log_prob(ratios).sum()
        names = [layer.name for layer in self.space.cost.layers]
        bits = {name: 8 for name in names}
        if self.mixed:
            pooled = h.mean(0)
            hl = torch.stack([h[g] if g >= 0 else pooled for g in self.owner])
            bit_dist = self.bits_head(hl)
            fp32 = (bit_dist.probs > 0.5).float() if greedy else bit_dist.sample()
            logp = logp + bit_dist.log_prob(fp32).sum()
            bits = {name: 32 if f > 0.5 else 8 for name, f in zip(names, fp32.tolist())}
        return decode_genome(self.space, ratios.detach().numpy(), bits), logp


def rl_joint_search(space: JointSpace, evaluate: Callable[[np.ndarray, dict[str, int]], float],
                    bit_choices: tuple[int, ...] = (8, 32), config: RLJointConfig | None = None
                    ) -> tuple[Candidate, list[Candidate]]:
    """Train the controller for ``config.episodes`` episodes; return the best candidate and all scored."""
    config = config or RLJointConfig()
    agent = _Controller(space, config, bit_choices)
    scored: dict[tuple, Candidate] = {}

    def score(c: Candidate) -> Candidate:
        if c.key() not in scored:
            c.score = float(evaluate(c.keep, c.bits))
            scored[c.key()] = c
        return scored[c.key()]

    int8 = {layer.name: 8 for layer in space.cost.layers}
    for seed in (space.uniform(int8), space.global_keep(int8)):
        score(seed)
    baseline = None
    for start in range(0, config.episodes, config.batch_episodes):
        losses, rewards = [], []
        for _ in range(min(config.batch_episodes, config.episodes - start)):
            candidate, logp = agent.rollout(greedy=False)
            reward = score(candidate).score
            rewards.append(reward)
            losses.append((logp, reward))
        mean = float(np.mean(rewards))
        momentum = config.baseline_momentum
        baseline = mean if baseline is None else momentum * baseline + (1 - momentum) * mean
        scale = float(np.std(rewards)) or 1.0
        loss = -sum(logp * (reward - baseline) / scale for logp, reward in losses) / len(losses)
        agent.optimizer.zero_grad()
        loss.backward()
        agent.optimizer.step()
    with torch.no_grad():
        score(agent.rollout(greedy=True)[0])
    everything = list(scored.values())
    return max(everything, key=lambda c: c.score), everything

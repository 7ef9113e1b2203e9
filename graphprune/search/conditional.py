"""Budget-conditioned RL allocation (CACP-style) with a GCN PruningNet.

    s = ConditionalSearch(model, example_inputs, eval_fn, calib_data)   # supernet=True, train_data=...: see below
    s.fit(episodes=200)              # one policy, budgets sampled from config.budget_range
    plan = s.plan(0.45)              # any budget in (or near) the range, no further search
    s.save("policy.pt"); s.plot_rewards("rewards.png")

**Episode.**  Sample β ~ U(budget_range); embed the layer graph with β as a node feature
(``policy.PruningNet``); visit the groups in dataflow order; at group l the policy proposes a keep
fraction x_l ~ Beta, the environment clips the count into the CACP bounds (``cacp.BoundedEpisode``), so
the finished plan costs <= β by construction.  Reward R = ``eval_fn`` of the masked, BN-recalibrated
candidate (``evaluate.CandidateEvaluator``).

**Why REINFORCE with a moving-average baseline, not PPO.**  The reward is terminal and each one costs a
full candidate evaluation, so a run has tens to hundreds of episodes: too few to fit PPO's value network
(its critic would need the same evaluations to learn β- and plan-dependent values), and PPO's clipped
multi-epoch reuse adds hyper-parameters whose tuning needs runs we cannot afford.  REINFORCE is unbiased
with any action-independent baseline; we use one exponential moving average of R *per budget bin*
(reward levels differ strongly across β, a single average would make the advantage mostly "was β
large?"), and divide advantages by a running RMS.  Loss per batch of episodes:
``−mean_e (Σ_l log π(x_l | s_l)) · A_e − c_H · mean entropy``, Adam.

**Reward options** (``reward.py``; issue 12: the plain reward is flat near chance at β ≈ 0.15):
``RLConfig.baseline="uniform"`` makes the advantage R − R(uniform plan at β) (one extra evaluation per
distinct β); ``RLConfig.init`` starts the policy at a rule's plan (``policy.py``: a residual around it);
an ``evaluate.CandidateEvaluator`` replaced by ``reward.FinetunedEvaluator`` scores candidates after a
few SGD steps.  Defaults (evidence in ``bench/results/search_rl_reward.md``): plain masked reward, EMA baseline,
policy started at the uniform plan (``init="uniform"``; "none" is the earlier cold start).

**Supernet option.**  ``supernet=SupernetConfig(...)`` (or True) with ``train_data``: rewards are scored
on a copy of the model trained on sampled sub-networks (``supernet.py``); ``self.supernet`` holds its
training curve.  Plans are keep masks of ``model`` itself.

**Plans.**  ``plan(β)`` rolls the policy out greedily (Beta means), then projects the resulting group
ratios exactly onto β with the allocator's bisection and fill (``SearchContext.project``); the plan's
``info["projection"]`` reports how far that moved it (cost ratio before/after, units changed).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..budget import Budget
from ..evaluate import CandidateEvaluator, EvalConfig
from ..plan import Plan
from .allocate import AllocationConfig
from .cacp import BoundedEpisode
from .search_context import SearchContext, SearchResult
from .layer_graph import FEATURES, layer_graph
from .policy import PruningNet

__all__ = ["RLConfig", "ConditionalSearch", "POLICY_FORMAT"]

POLICY_FORMAT = "graphprune.cacp-policy/1"


@dataclass(frozen=True)
class RLConfig:
    """Agent settings.  ``budget_range=(β, β)`` trains a policy for one budget."""

    budget_range: tuple[float, float] = (0.3, 0.8)
    hidden: int = 64
    lr: float = 3e-3
    batch_episodes: int = 4
    baseline_momentum: float = 0.8
    baseline_bins: int = 5
    entropy: float = 1e-3
    seed: int = 0
    #: "ema": advantage = R − moving average per β bin; "uniform": R − the uniform plan's reward at the same β
    baseline: str = "ema"
    #: policy mean at start: "none" (Beta(2.3, 2.3)), a rule ("uniform", "global"), or "best-rule" (``reward.py``).
    #: NOTE: default "uniform" (no evaluation): the untrained policy then plans the uniform rule; on MobileNetV2 at
    #: β 0.15 / 0.3 the cold start lost 24-34 points after fine-tune to the best rule (``search_rl_reward.md``)
    init: str = "uniform"
    init_concentration: float = 24.0

    def __post_init__(self) -> None:
        from .reward import RULE_INITS

        if self.baseline not in ("ema", "uniform"):
            raise ValueError(f"RLConfig.baseline must be 'ema' or 'uniform', got {self.baseline!r}")
        if self.init not in RULE_INITS:
            raise ValueError(f"RLConfig.init must be one of {RULE_INITS}, got {self.init!r}")
        if self.init_concentration <= 0:
            raise ValueError(f"RLConfig.init_concentration must be > 0, got {self.init_concentration}")


class ConditionalSearch:
    """A trained-once, any-budget allocator (module docstring)."""

    def __init__(self, model: torch.nn.Module, example_inputs: Any, eval_fn: Callable | None = None,
                 calib_data: Iterable | None = None, *, importance: str | Callable = "l2", metric: str = "macs",
                 config: RLConfig = RLConfig(), alloc: AllocationConfig = AllocationConfig(),
                 eval_config: EvalConfig = EvalConfig(), progress: bool = True, supernet: Any = None,
                 train_data: Any = None):
        from ..inspect_model import inspect
        from ..importance import CRITERIA, score_units
        from .supernet import as_supernet_config, supernet_graph

        graph = inspect(model, example_inputs)
        needs_data = isinstance(importance, str) and importance in CRITERIA and CRITERIA[importance].needs_data
        scores = score_units(graph, importance, calib=calib_data if needs_data else None)
        eval_graph, self.supernet = graph, None  # NOTE: rewards on supernet weights, plans for ``model``
        if as_supernet_config(supernet) is not None:
            eval_graph, self.supernet = supernet_graph(graph, scores, train_data, as_supernet_config(supernet),
                                                       alloc, metric)
        evaluator = CandidateEvaluator(eval_graph, eval_fn, calib_data, eval_config) if eval_fn is not None else None
        ctx = SearchContext(graph, scores, Budget(config.budget_range[1], metric), alloc, evaluator,
                            config.seed, progress, lowest_budget=Budget(config.budget_range[0], metric))
        self._setup(ctx, config)

    @classmethod
    def from_context(cls, ctx: SearchContext, config: RLConfig = RLConfig()) -> "ConditionalSearch":
        self = cls.__new__(cls)
        self.supernet = None
        self._setup(ctx, config)
        return self

    def _setup(self, ctx: SearchContext, config: RLConfig) -> None:
        self.ctx, self.config, self.graph = ctx, config, ctx.graph
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.layers = layer_graph(ctx.graph, ctx.scores)
        self.net = PruningNet(len(FEATURES), config.hidden)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.baseline = np.full(config.baseline_bins, np.nan)
        self.adv_rms = 1.0
        self.history: list[dict[str, float]] = []
        self._priors: dict[float, tuple[np.ndarray, str]] = {}  # β -> (rule fractions, rule name)
        self._uniform: dict[float, float] = {}  # β -> the uniform plan's reward (baseline="uniform")

    def prior(self, budget: float) -> np.ndarray | None:
        """Per-group rule fractions the policy starts from at ``budget`` (``RLConfig.init``), cached per β."""
        if self.config.init == "none":
            return None
        key = round(float(budget), 3)
        if key not in self._priors:
            from .reward import rule_prior

            score = self.ctx.evaluator if self.config.init == "best-rule" else None
            self._priors[key] = rule_prior(self.ctx, key, self.config.init, score)
        return self._priors[key][0]

    def uniform_reward(self, budget: float) -> float:
        """The reward of the uniform plan at ``budget`` (one evaluation per distinct β, to 3 decimals)."""
        key = round(float(budget), 3)
        if key not in self._uniform:
            from .allocate import allocate

            b = Budget(key, self.ctx.budget.metric)
            self._uniform[key] = float(self.ctx.need_evaluator("rl")(allocate(self.graph, self.ctx.scores, b,
                                                                               "uniform", self.ctx.cfg).keep))
        return self._uniform[key]

    # ---- episodes ---------------------------------------------------------------------------------
    def rollout(self, budget: float, greedy: bool = False) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, dict]:
        """One episode at ``budget``: (keep, Σ log-prob, mean entropy, info).  Meets ``budget`` by construction."""
        env = BoundedEpisode(self.ctx, budget)
        h = self.net.embed(self.layers.with_budget(budget), self.layers.edge_index)
        n, lo = self.ctx.n, self.ctx.lo
        prior = self.prior(budget)
        logps, ents = [], []
        for l in range(len(n)):
            k_lo, k_hi = env.bounds(l)
            z = torch.tensor([l / len(n), env.committed(l) / budget, k_lo / n[l], k_hi / n[l], (budget - 0.5) * 4],
                             dtype=torch.float32)
            dist = self.net.distribution(h[l], z, None if prior is None else prior[l],
                                         self.config.init_concentration)
            x = (dist.mean if greedy else dist.sample()).clamp(1e-4, 1 - 1e-4)
            env.step(l, float(lo[l] + x * (n[l] - lo[l])), (k_lo, k_hi))
            logps.append(dist.log_prob(x))
            ents.append(dist.entropy())
        keep = env.keep()
        info = {"budget": budget, "ratio": self.ctx.ratio_of(keep), "clipped": env.clipped}
        return keep, torch.stack(logps).sum(), torch.stack(ents).mean(), info

    def _bin(self, budget: float) -> int:
        lo, hi = self.config.budget_range
        if hi <= lo:
            return 0
        return int(np.clip((budget - lo) / (hi - lo) * self.config.baseline_bins, 0, self.config.baseline_bins - 1))

    def _advantage(self, budget: float, reward: float) -> float:
        if self.config.baseline == "uniform":  # NOTE: no moving average: the uniform plan is the bar to beat
            adv = reward - self.uniform_reward(budget)
            m = self.config.baseline_momentum
            self.adv_rms = np.sqrt(m * self.adv_rms ** 2 + (1 - m) * adv ** 2) if self.history else max(abs(adv), 1e-3)
            return adv / max(self.adv_rms, 1e-6)
        b = self._bin(budget)
        if np.isnan(self.baseline[b]):
            self.baseline[b] = reward
        adv = reward - self.baseline[b]
        m = self.config.baseline_momentum
        self.baseline[b] = m * self.baseline[b] + (1 - m) * reward
        self.adv_rms = np.sqrt(m * self.adv_rms ** 2 + (1 - m) * adv ** 2) if self.history else max(abs(adv), 1e-3)
        return adv / max(self.adv_rms, 1e-6)

    def _update(self, batch: list[tuple[torch.Tensor, torch.Tensor, float]]) -> None:
        loss = -torch.stack([lp * adv + self.config.entropy * ent for lp, ent, adv in batch]).mean()
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.optimizer.step()

    def fit(self, episodes: int, progress: bool | None = None) -> list[dict[str, float]]:
        """Train for ``episodes`` episodes; returns (and extends) ``self.history``."""
        evaluator = self.ctx.need_evaluator("rl")
        lo, hi = self.config.budget_range
        batch: list = []
        bar = tqdm(range(episodes), desc="rl", disable=not (self.ctx.progress if progress is None else progress),
                   leave=False)
        for _ in bar:
            start = time.perf_counter()
            budget = float(self.rng.uniform(lo, hi)) if hi > lo else lo
            keep, logp, ent, info = self.rollout(budget)
            reward = evaluator(keep)
            batch.append((logp, ent, self._advantage(budget, reward)))
            if len(batch) == self.config.batch_episodes:
                self._update(batch)
                batch = []
            self.history.append({**info, "episode": len(self.history), "reward": reward,
                                 "seconds": time.perf_counter() - start})
            bar.set_postfix(reward=f"{reward:.3f}", beta=f"{budget:.2f}", refresh=False)
        if batch:
            self._update(batch)
        return self.history

    # ---- plans ------------------------------------------------------------------------------------
    def search_result(self, budget: float | Budget) -> SearchResult:
        """Greedy rollout at ``budget``, projected exactly onto it (module docstring)."""
        b = budget if isinstance(budget, Budget) else Budget(float(budget), self.ctx.budget.metric)
        start = time.perf_counter()
        with torch.no_grad():
            keep0, _, _, info = self.rollout(b.ratio, greedy=True)
        ctx = replace(self.ctx, budget=b)
        alloc = ctx.project(ctx.counts_of(keep0) / np.maximum(ctx.n, 1))
        moved = {"ratio_before": info["ratio"], "ratio_after": alloc.ratio,
                 "units_changed": int((keep0 != alloc.keep).sum()), "units": int(len(keep0)),
                 "max_group_change": float(np.max(np.abs(ctx.counts_of(keep0) - ctx.counts_of(alloc.keep))
                                                  / np.maximum(ctx.n, 1)))}
        return SearchResult(alloc.keep, alloc.ratio, None, 0, time.perf_counter() - start,
                            [h["reward"] for h in self.history], {"projection": moved, "clipped": info["clipped"]})

    def plan(self, budget: float | Budget) -> Plan:
        """A ``Plan`` for ``budget`` from the trained policy (no evaluations)."""
        result = self.search_result(budget)
        b = budget if isinstance(budget, Budget) else Budget(float(budget), self.ctx.budget.metric)
        return Plan.from_keep(self.graph, result.keep, budget=b.ratio, metric=b.metric, strategy="rl",
                              achieved=result.ratio, projection=result.info["projection"])

    # ---- persistence and curves ------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        torch.save({"format": POLICY_FORMAT, "groups": self.layers.names, "config": asdict(self.config),
                    "state_dict": self.net.state_dict(), "baseline": self.baseline.tolist(),
                    "history": self.history}, path)

    def load(self, path: str | Path) -> "ConditionalSearch":
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != POLICY_FORMAT:
            raise ValueError(f"{path}: not a {POLICY_FORMAT} file")
        if state["groups"] != self.layers.names:
            raise ValueError(f"{path}: policy was trained on other groups ({len(state['groups'])} vs "
                             f"{len(self.layers.names)}); same architecture and input shape?")
        # NOTE: a policy saved before RLConfig.init existed was trained from the cold start
        config = RLConfig(**{"init": "none", **state["config"], "budget_range": tuple(state["config"]["budget_range"])})
        if config.hidden != self.config.hidden:
            self.net = PruningNet(len(FEATURES), config.hidden)
        self.config = config
        self.net.load_state_dict(state["state_dict"])
        self.baseline = np.array(state["baseline"], dtype=np.float64)
        self.history = list(state["history"])
        return self

    def plot_rewards(self, path: str | Path, window: int = 10) -> None:
        """Reward per episode (coloured by β) and its moving average, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        r = np.array([h["reward"] for h in self.history])
        fig, ax = plt.subplots(figsize=(6, 3.5))
        points = ax.scatter(np.arange(len(r)), r, c=[h["budget"] for h in self.history], s=10, cmap="viridis")
        if len(r) >= window:
            ax.plot(np.arange(window - 1, len(r)), np.convolve(r, np.ones(window) / window, "valid"), "k-",
                    label=f"moving average ({window})")
            ax.legend(loc="lower right")
        fig.colorbar(points, label="budget β")
        ax.set(xlabel="episode", ylabel="reward (eval_fn)", title="CACP policy training")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)

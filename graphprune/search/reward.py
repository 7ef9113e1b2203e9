"""RL reward options: a candidate scored after a few fine-tune steps, and the rule plan a policy starts from.

**Why.**  The default reward is ``eval_fn`` of the masked, BN-recalibrated candidate *before* any
training.  At tight budgets (β ≈ 0.15 of MACs) every such candidate is near chance, the reward is flat
(a 300-episode ResNet-56 run never rose) and it can be gamed: minus the cross-entropy rewards outputs
that are near-uniform over outputs that are damaged but informative.  Two remedies, both options:

* ``FinetunedEvaluator``: the masked candidate is trained for ``steps`` SGD steps on a few fixed
  training batches (pruned slices re-zeroed after every step, BN in train mode), BN is re-estimated on
  the calibration batches, then ``eval_fn`` runs.  It scores how much a plan *recovers*, not only how
  much of the dense network survives the cut.  Deterministic: fixed batches, fixed order, the original
  weights restored before every candidate (``MaskedGraph.set_keep``).  Cost ≈ (1 + 3·steps·b_train/b_eval)
  masked evaluations.
* ``rule_prior``: per-group desired keep fractions of a hand-made allocation (``allocate`` strategies,
  or the best of several by the evaluator's score) at budget β — the mean the policy starts from
  (``RLConfig.init``; ``policy.PruningNet.distribution(..., prior=...)``), so RL explores around the rule
  instead of around Beta(2.3, 2.3) = "keep ~half of every group".

The third remedy, a reward relative to the uniform plan at the same β (``RLConfig.baseline="uniform"``),
lives in ``conditional.py`` (it is an advantage baseline, not an evaluator).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F

from ..budget import Budget
from ..evaluate import Batch, CandidateEvaluator, recalibrate_bn, split_batch, take_batches
from .allocate import STRATEGIES, allocate

__all__ = ["FinetunedEvaluator", "finetuned_evaluator", "rule_prior", "RULE_INITS"]

#: ``RLConfig.init`` values: no prior, one ``allocate`` strategy, or the best of them by the reward.
RULE_INITS = ("none", "uniform", "global", "best-rule")


@dataclass
class FinetunedEvaluator(CandidateEvaluator):
    """``evaluator(keep)``: ``eval_fn`` of the masked candidate after ``steps`` SGD steps and BN re-estimation.

    Attributes (besides ``CandidateEvaluator``'s):
        train_batches: (inputs, labels) batches the steps cycle through (materialised once, fixed order).
        steps: SGD steps per candidate (0: the plain masked score, BN-recalibrated).
        lr, momentum: SGD settings (no weight decay: a pruned slice must stay exactly zero).
    """

    train_batches: list[Batch] = field(default_factory=list)
    steps: int = 2
    lr: float = 0.01
    momentum: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        self.train_batches = [split_batch(b) for b in self.train_batches]
        if self.steps < 0:
            raise ValueError(f"FinetunedEvaluator: steps must be >= 0, got {self.steps}")
        if self.steps and (not self.train_batches or any(y is None for _, y in self.train_batches)):
            raise ValueError("FinetunedEvaluator: steps > 0 needs train_batches of (inputs, labels)")

    def model(self, keep: np.ndarray) -> fx.GraphModule:
        """Masked copy at ``keep``, trained ``steps`` steps from the original weights, BN re-estimated."""
        gm = self.masked.set_keep(keep)
        if self.steps:
            masks = self.masked.param_masks(keep)
            params = [p for p in gm.parameters() if p.requires_grad]
            opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
            gm.train()
            with torch.enable_grad():  # NOTE: CandidateEvaluator.__call__ runs us under no_grad
                for step in range(self.steps):
                    inputs, labels = self.train_batches[step % len(self.train_batches)]
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(gm(*inputs), labels).backward()
                    opt.step()
                    with torch.no_grad():  # the invariant "pruned elements are exactly 0" (masked_graph.py)
                        for tensor, m in zip(self.masked.param_tensors, masks):
                            tensor.mul_(m)
            for p in params:
                p.grad = None
        if self.config.recalibrate:
            recalibrate_bn(gm, self.calib)
        gm.eval()
        return gm


def finetuned_evaluator(evaluator: CandidateEvaluator, train_batches: Any, steps: int = 2, lr: float = 0.01,
                        batches: int | None = None) -> FinetunedEvaluator:
    """A ``FinetunedEvaluator`` with ``evaluator``'s graph, ``eval_fn``, calibration batches and config."""
    return FinetunedEvaluator(evaluator.graph, evaluator.eval_fn, evaluator.calib, evaluator.config,
                              train_batches=take_batches(train_batches, batches), steps=steps, lr=lr)


def rule_prior(ctx, budget: float, init: str, score: Callable[[np.ndarray], float] | None = None
               ) -> tuple[np.ndarray, str]:
    """(per-group desired fraction x_l ∈ [0, 1] of the chosen rule's plan at ``budget``, the rule's name).

    x_l = (k_l − lo_l) / (n_l − lo_l): where the policy's action x maps back to the rule's count k_l
    (``conditional.ConditionalSearch.rollout``).  ``init="best-rule"`` scores every ``allocate`` rule's
    plan with ``score`` (evaluations: one per rule) and takes the best.
    """
    if init not in RULE_INITS or init == "none":
        raise ValueError(f"rule_prior: init must be one of {RULE_INITS[1:]}, got {init!r}")
    names = [s for s in ("uniform", "global") if s in STRATEGIES] if init == "best-rule" else [init]
    if init == "best-rule" and score is None:
        raise ValueError("rule_prior: init='best-rule' needs score (the evaluator) to choose between rules")
    b = Budget(float(budget), ctx.budget.metric)
    keeps = {s: allocate(ctx.graph, ctx.scores, b, s, ctx.cfg).keep for s in names}
    best = max(names, key=lambda s: score(keeps[s])) if len(names) > 1 else names[0]
    counts = ctx.counts_of(keeps[best])
    span = np.maximum(ctx.n - ctx.lo, 1)
    return np.clip((counts - ctx.lo) / span, 0.0, 1.0), best

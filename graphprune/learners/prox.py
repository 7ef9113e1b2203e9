"""Proximal steps for L1 penalties: exact zeros instead of small values.

For ``min_x f(x) + λ‖x‖₁`` with ``f`` smooth, the proximal operator of ``ηλ‖·‖₁`` is soft thresholding::

    prox(z) = sign(z) · max(|z| − ηλ, 0)

**ISTA** takes ``x ← prox(x − η∇f(x))``.  **FISTA** (Beck & Teboulle 2009) adds Nesterov momentum: the
gradient is taken at an extrapolated point ``y``::

    x_k     = prox(y_k − η∇f(y_k))
    t_{k+1} = (1 + √(1 + 4 t_k²)) / 2
    y_{k+1} = x_k + ((t_k − 1) / t_{k+1}) (x_k − x_{k−1})

so the error after k steps is O(1/k²) instead of O(1/k).  With ``nonnegative`` the penalty is
``λ‖x‖₁ + ι(x ≥ 0)`` (a mask scales, it never flips a sign): the prox becomes ``max(z − ηλ, 0)`` and the
extrapolated point is clipped at 0 too, since it is what the forward pass sees.  :class:`FISTA` keeps ``y`` in the parameter
(the point the next forward/backward must see) and the iterate ``x`` in its state; :meth:`FISTA.finalize`
writes ``x`` back, whose zeros are exact.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

__all__ = ["soft_threshold", "FISTA", "prox_l1_", "steps_to_zero", "calibrate_l1"]


def soft_threshold(z: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """``sign(z) · max(|z| − threshold, 0)``."""
    return torch.sign(z) * torch.clamp(z.abs() - threshold, min=0.0)


@torch.no_grad()
def prox_l1_(tensor: torch.Tensor, threshold: float, mask: torch.Tensor | None = None) -> None:
    """In-place ISTA shrink of ``tensor`` (only where ``mask`` is true, if given)."""
    shrunk = soft_threshold(tensor, threshold)
    tensor.copy_(shrunk if mask is None else torch.where(mask, shrunk, tensor))


class FISTA(torch.optim.Optimizer):
    """Proximal gradient with Nesterov/FISTA momentum for ``f(x) + lam·‖x‖₁`` (module docstring).

    Args:
        params: tensors to optimise (their ``.grad`` is ∇f at the point the parameter holds).
        lr: step size η (≤ 1/L for the O(1/k²) guarantee, L the Lipschitz constant of ∇f).
        lam: L1 weight λ.
        restart: gradient-scheme adaptive restart (O'Donoghue & Candès 2015): when the momentum points
            against the proximal step, ``⟨y_k − x_k, x_k − x_{k−1}⟩ > 0``, reset ``t`` to 1.  It keeps
            the momentum from overshooting on non-convex losses (GAL); convex rates are kept.
        nonnegative: constrain to ``x ≥ 0`` (module docstring).
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, lam: float, restart: bool = False,
                 nonnegative: bool = False):
        if lr <= 0 or lam < 0:
            raise ValueError(f"FISTA needs lr > 0 and lam >= 0, got lr={lr}, lam={lam}")
        super().__init__(params, {"lr": lr, "lam": lam, "restart": restart, "nonnegative": nonnegative})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["x"], state["t"] = p.detach().clone(), 1.0
                z, shrink = p - group["lr"] * p.grad, group["lr"] * group["lam"]
                x = torch.clamp(z - shrink, min=0.0) if group["nonnegative"] else soft_threshold(z, shrink)
                if group["restart"] and float(((p - x) * (x - state["x"])).sum()) > 0:
                    state["t"] = 1.0
                t_next = (1.0 + math.sqrt(1.0 + 4.0 * state["t"] ** 2)) / 2.0
                y = x + ((state["t"] - 1.0) / t_next) * (x - state["x"])
                # NOTE: without the clip, momentum carries a mask that just reached 0 on to negative values.
                p.copy_(torch.clamp(y, min=0.0) if group["nonnegative"] else y)
                state["x"], state["t"] = x, t_next
        return loss

    def iterate(self, p: torch.Tensor) -> torch.Tensor:
        """The current iterate ``x`` of ``p`` (``p`` itself before the first step)."""
        state = self.state.get(p)
        return state["x"] if state else p.detach()

    @torch.no_grad()
    def finalize(self) -> None:
        """Write the iterates (exact zeros) back into the parameters."""
        for group in self.param_groups:
            for p in group["params"]:
                p.copy_(self.iterate(p))


def steps_to_zero(start: float, shrink: float, momentum: bool, limit: int = 100_000) -> int:
    """Proximal steps an *unopposed* coefficient (∇f = 0) starting at ``start`` takes to reach 0, when
    each step shrinks by ``shrink = η·λ`` (ISTA; FISTA when ``momentum``)."""
    x_prev, y, t = start, start, 1.0
    for k in range(1, limit + 1):
        x = max(y - shrink, 0.0)
        if x == 0.0:
            return k
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        y = x + ((t - 1.0) / t_next) * (x - x_prev) if momentum else x
        x_prev, t = x, t_next
    return limit


def calibrate_l1(start: float, steps: int, lr: float, momentum: bool) -> float:
    """The smallest λ (to 0.1 %) with which an unopposed coefficient starting at ``start`` reaches exact
    zero within ``steps`` proximal steps of size ``lr``: the loss gradient then decides who survives."""
    if not momentum:
        return start / (steps * lr)
    lo, hi = 0.0, start / lr  # hi zeroes it in one step
    while hi - lo > 1e-3 * hi:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if steps_to_zero(start, lr * mid, True) <= steps else (mid, hi)
    return hi

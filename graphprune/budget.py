"""Budgets: what fraction of the dense model's cost the pruned model may keep."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

__all__ = ["Budget", "BudgetError", "as_budget", "as_ratio", "METRICS"]

# "latency": a fraction of the dense model's time on a latency target (``graphprune.latency``).
METRICS = ("macs", "params", "latency")


class BudgetError(ValueError):
    """A budget that is out of range or cannot be met."""


def as_ratio(value: Any, metric: str = "macs") -> float:
    """``value`` as a float in (0, 1]: any real number, numpy scalar or 0-d tensor; refuse the rest.

    Raises:
        BudgetError: for bools, strings, non-scalars, nan/inf and values outside (0, 1].
    """
    number = _real_scalar(value)
    if number is None:
        raise BudgetError(f"budget must be a float in (0, 1] or a Budget, got {type(value).__name__} {value!r:.60}")
    if not (math.isfinite(number) and 0.0 < number <= 1.0):
        raise BudgetError(f"budget must be a fraction of {metric} to keep in (0, 1], got {value!r}; "
                          "e.g. 0.5 keeps half the MACs")
    return number


def _real_scalar(value: Any) -> float | None:
    """``float(value)`` for a real number (Python, numpy or a 0-d non-bool tensor), else None."""
    if isinstance(value, (bool, np.bool_)):  # NOTE: True would silently mean 1.0
        return None
    if isinstance(value, numbers.Real):  # int, float, Fraction, numpy integer and floating scalars
        return float(value)
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_complex() \
            and value.dtype != torch.bool and value.device.type != "meta":
        return float(value.item())
    return None


@dataclass(frozen=True)
class Budget:
    """Keep at most ``ratio`` of the dense model's ``metric`` ("macs", "params" or "latency"), 0 < ratio <= 1.

    ``ratio`` may be given as any real scalar (numpy, 0-d tensor); it is stored as a Python float.

    Attributes:
        time_ms: for ``Budget.ms``: an absolute time on the latency target; ``ratio`` is then 1.0 until
            ``resolve_ms`` turns it into a fraction of the predicted dense time.
        also: further budgets that must hold too (``a & b``); ``ratio`` and ``metric`` name the first.
    """

    ratio: float
    metric: str = "macs"
    time_ms: float | None = None
    also: tuple["Budget", ...] = ()

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise BudgetError(f"budget metric must be one of {METRICS}, got {self.metric!r}")
        object.__setattr__(self, "ratio", as_ratio(self.ratio, self.metric))

    @classmethod
    def macs(cls, ratio: float) -> "Budget":
        return cls(ratio, "macs")

    @classmethod
    def params(cls, ratio: float) -> "Budget":
        return cls(ratio, "params")

    # ---- latency budgets (graphprune.latency; prune(..., target=..., latency_model=...)) ----------------
    @classmethod
    def latency(cls, ratio: float) -> "Budget":
        """Keep at most ``ratio`` of the dense model's measured latency on the target."""
        return cls(ratio, "latency")

    @classmethod
    def ms(cls, ms: float) -> "Budget":
        """At most ``ms`` milliseconds on the target (a time above the dense model's keeps it whole)."""
        value = _real_scalar(ms)
        if value is None or not 0.0 < value < float("inf"):
            raise BudgetError(f"Budget.ms takes a positive, finite time in milliseconds, got {ms!r}")
        return cls(1.0, "latency", time_ms=value)

    def __and__(self, other: "Budget") -> "Budget":
        """Both budgets at once, e.g. ``Budget.macs(0.5) & Budget.latency(0.6)``."""
        if not isinstance(other, Budget):
            return NotImplemented
        parts = self.parts() + other.parts()
        metrics = [p.metric for p in parts]
        if len(set(metrics)) < len(metrics):
            raise BudgetError(f"a combined budget bounds each metric once, got {metrics}")
        return replace(parts[0], also=tuple(parts[1:]))

    def parts(self) -> tuple["Budget", ...]:
        """Every budget that must hold: this one (without ``also``) and those in ``also``."""
        return (replace(self, also=()),) + tuple(p for b in self.also for p in b.parts())

    @property
    def needs_latency(self) -> bool:
        return any(p.metric == "latency" for p in self.parts())

    @property
    def unbounded(self) -> bool:
        """Whether the budget keeps the whole model (every part at ratio 1, no unresolved time)."""
        return all(p.ratio >= 1.0 and p.time_ms is None for p in self.parts())

    def describe(self) -> str:
        text = f"{self.time_ms:.3f} ms" if self.time_ms is not None else f"{self.ratio:.3f} of {self.metric}"
        return " and ".join([text] + [p.describe() for p in self.also])


def as_budget(budget: "Budget | float") -> Budget:
    """A ``Budget`` as is; a real scalar (float, numpy scalar, 0-d tensor) as a MACs budget."""
    if isinstance(budget, Budget):
        return budget
    return Budget(as_ratio(budget), "macs")

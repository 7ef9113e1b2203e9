"""Budgets: what fraction of the dense model's cost the pruned model may keep."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Budget", "BudgetError", "as_budget", "as_ratio"]


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
    """Keep at most ``ratio`` of the dense model's ``metric`` ("macs" or "params"), 0 < ratio <= 1.

    ``ratio`` may be given as any real scalar (numpy, 0-d tensor); it is stored as a Python float.
    """

    ratio: float
    metric: str = "macs"

    def __post_init__(self) -> None:
        if self.metric not in ("macs", "params"):
            raise BudgetError(f"budget metric must be 'macs' or 'params', got {self.metric!r}")
        object.__setattr__(self, "ratio", as_ratio(self.ratio, self.metric))

    @classmethod
    def macs(cls, ratio: float) -> "Budget":
        return cls(ratio, "macs")

    @classmethod
    def params(cls, ratio: float) -> "Budget":
        return cls(ratio, "params")


def as_budget(budget: "Budget | float") -> Budget:
    """A ``Budget`` as is; a real scalar (float, numpy scalar, 0-d tensor) as a MACs budget."""
    if isinstance(budget, Budget):
        return budget
    return Budget(as_ratio(budget), "macs")

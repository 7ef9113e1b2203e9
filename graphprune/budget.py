"""Budgets: what fraction of the dense model's cost the pruned model may keep."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Budget", "BudgetError", "as_budget"]


class BudgetError(ValueError):
    """A budget that is out of range or cannot be met."""


@dataclass(frozen=True)
class Budget:
    """Keep at most ``ratio`` of the dense model's ``metric`` ("macs" or "params"), 0 < ratio <= 1."""

    ratio: float
    metric: str = "macs"

    def __post_init__(self) -> None:
        if self.metric not in ("macs", "params"):
            raise BudgetError(f"budget metric must be 'macs' or 'params', got {self.metric!r}")
        if not (isinstance(self.ratio, (int, float)) and 0.0 < float(self.ratio) <= 1.0):
            raise BudgetError(f"budget must be a fraction of {self.metric} to keep in (0, 1], got {self.ratio!r}; "
                              "e.g. 0.5 keeps half the MACs")

    @classmethod
    def macs(cls, ratio: float) -> "Budget":
        return cls(ratio, "macs")

    @classmethod
    def params(cls, ratio: float) -> "Budget":
        return cls(ratio, "params")


def as_budget(budget: "Budget | float") -> Budget:
    if isinstance(budget, Budget):
        return budget
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise BudgetError(f"budget must be a float in (0, 1] or a Budget, got {type(budget).__name__}")
    return Budget(float(budget), "macs")

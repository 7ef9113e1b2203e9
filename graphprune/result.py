"""What ``prune`` hands back: the pruned model with its plan, graph and report in numbers.

Every strategy ends here (allocations, searches and the training-time learners), so this module sits below
all of them; ``graphprune.api`` re-exports both classes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch.nn as nn

from .depgraph import DependencyGraph
from .plan import Plan

if TYPE_CHECKING:
    from .search.latency_budget import LatencyOutcome

__all__ = ["PruneReport", "PruneResult"]


@dataclass
class PruneReport:
    """What a prune did, in numbers."""

    budget: float
    metric: str
    dense_macs: float
    dense_params: float
    macs: float
    params: float
    groups_pruned: int
    groups_total: int
    seconds: dict[str, float] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # user's names/hooks not carried over: "name: reason"
    width_policy: str = ""
    target: str | None = None
    predicted_dense_ms: float | None = None
    predicted_ms: float | None = None
    measured_dense_ms: float | None = None
    measured_ms: float | None = None
    latency_iterations: int = 0
    latency_checks: list = field(default_factory=list)  # every plan's LatencyCheck (cap, predicted, measured)
    latency_stop: str = ""  # why the re-plan loop stopped (search/latency_budget.py)
    budget_text: str = ""
    front_end: str = "fx"  # "fx" (symbolic tracing) or "export" (torch.export, when fx could not trace)
    output_kind: str = "graph"  # "module" (the user's own class, rewritten in place) or "graph" (fx GraphModule)
    output_reason: str = ""  # why the graph was returned ("" when the user's class was)
    output_notes: list[str] = field(default_factory=list)  # HF config fields set or left, size attributes set
    size_attributes: dict[str, int] = field(default_factory=dict)  # int attributes set in place, for rebuild_like
    attention: str = ""  # attention units and heads kept per attention (depgraph/heads.py), "" without attention
    grouped: str = ""  # grouped-conv units and groups kept per conv (depgraph/conv_groups.py), "" without any

    def add_latency(self, outcome: LatencyOutcome | None) -> None:
        """Copy the re-plan loop's final predicted and measured times (``search.latency_budget``)."""
        if outcome is not None and outcome.checks:
            c = outcome.final
            self.target, self.latency_iterations = outcome.target, outcome.iterations
            self.latency_checks, self.latency_stop = list(outcome.checks), outcome.stop
            self.predicted_dense_ms, self.predicted_ms = c.predicted_dense_ms, c.predicted_ms
            self.measured_dense_ms, self.measured_ms = c.measured_dense_ms, c.measured_ms

    @property
    def latency_ratio(self) -> float | None:
        """Measured pruned / dense time on the target (predicted when not measured; None without a model)."""
        if self.measured_ms is not None and self.measured_dense_ms:
            return self.measured_ms / self.measured_dense_ms
        if self.predicted_ms is not None and self.predicted_dense_ms:
            return self.predicted_ms / self.predicted_dense_ms
        return None

    @property
    def macs_ratio(self) -> float:
        return self.macs / self.dense_macs if self.dense_macs else 1.0

    @property
    def params_ratio(self) -> float:
        return self.params / self.dense_params if self.dense_params else 1.0

    def __str__(self) -> str:
        t = ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items())
        budget = self.budget_text or f"{self.budget:.3f} of {self.metric}"
        return (f"budget {budget}: MACs {self.dense_macs / 1e6:.2f}M -> "
                f"{self.macs / 1e6:.2f}M ({self.macs_ratio:.3f}), params {self.dense_params / 1e6:.3f}M -> "
                f"{self.params / 1e6:.3f}M ({self.params_ratio:.3f}); {self.groups_pruned}/{self.groups_total} "
                f"groups pruned; {t}" + self._latency_text() + self._output_text())

    def _output_text(self) -> str:
        if self.output_kind == "module":
            return "; output: the model's own class"
        return f"; output: torch.fx GraphModule ({self.output_reason})" if self.output_reason else ""

    def _latency_text(self) -> str:
        text = f"; widths: {self.width_policy}" if self.width_policy else ""
        text += f"; {self.attention}" if self.attention else ""
        text += f"; {self.grouped}" if self.grouped else ""
        if self.measured_ms is not None:
            text += (f"; {self.target}: measured {self.measured_dense_ms:.3f} -> {self.measured_ms:.3f} ms "
                     f"({self.latency_ratio:.3f}), predicted {self.predicted_dense_ms:.3f} -> "
                     f"{self.predicted_ms:.3f} ms, {self.latency_iterations} plan(s)")
            text += f" (stopped: {self.latency_stop})" if self.latency_stop else ""
        return text


@dataclass
class PruneResult:
    model: nn.Module  # the user's class (report.output_kind == "module") or an fx.GraphModule
    plan: Plan
    report: PruneReport
    graph: DependencyGraph

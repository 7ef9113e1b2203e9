"""``apply_plan``: replay a saved plan on a fresh instance of the same architecture (trace, graph, rewrite).

Below the strategies and the learners (``export.saving`` rebuilds pruned files with it); ``graphprune.api``
re-exports it.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx

from .inspect_model import inspect
from .model_checks import check_apply_plan_args
from .passes import rewrite, warn_hooks_not_kept
from .parametrized import warn_baked
from .plan import Plan, PlanError

__all__ = ["apply_plan"]


def apply_plan(model: torch.nn.Module, plan: Plan, example_inputs: Any, **trace_kw: Any) -> fx.GraphModule:
    """Re-apply a saved plan to a freshly built instance of the same architecture."""
    check_apply_plan_args(model, plan)
    if plan.info.get("attention") == "both":
        raise PlanError("this plan was made by prune(..., attention='both'): it is the second of two rounds and "
                        "applies to the first round's pruned model, not to a dense one; save the pruned model instead")
    # NOTE: unit ids mean whole heads or head-dim offsets depending on the plan's attention units
    trace_kw.setdefault("attention", plan.info.get("attention", "auto"))
    # NOTE: likewise whole groups or group-width offsets of grouped convs (plans from before the option: offsets)
    trace_kw.setdefault("grouped", plan.info.get("grouped", "group_width"))
    graph = inspect(model, example_inputs, **trace_kw)
    warn_hooks_not_kept(graph.traced)
    warn_baked(model)
    return rewrite(graph, plan.keep_mask(graph))

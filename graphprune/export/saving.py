"""Saving pruned models: the GraphModule itself, with its plan beside it.

``save_pruned`` writes one file (``torch.save`` of the GraphModule, which pickles its generated code and
its smaller parameters) and, if given, the plan as JSON next to it (``<path>.plan.json``); the plan
re-applies to a fresh instance of the original architecture with ``graphprune.apply_plan``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.fx as fx

from ..plan import Plan

__all__ = ["save_pruned", "load_pruned"]


def save_pruned(model: fx.GraphModule, path: str | Path, plan: Plan | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model, path)
    if plan is not None:
        plan.save(path.with_suffix(path.suffix + ".plan.json"))
    return path


def load_pruned(path: str | Path) -> fx.GraphModule:
    """Load a model written by ``save_pruned`` (a pickle: load only files you trust)."""
    return torch.load(Path(path), weights_only=False)

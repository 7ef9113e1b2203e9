"""Saving and loading weights.

Two formats, because pruned networks no longer match their factory:

* **registry checkpoint** (:func:`save_checkpoint`): a ``state_dict`` plus the
  registry name and factory kwargs that rebuild the architecture — small,
  portable, loads with ``weights_only=True``. Used for the baselines.
* **module file** (:func:`save_module`): the whole pickled ``nn.Module`` (an
  ``fx.GraphModule`` pickles its generated code), for pruned networks whose
  layer widths exist nowhere else. Loading unpickles code: only load your own files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "save_module", "load_module", "unwrap"]

FORMAT = "graphprune.checkpoint/1"


@dataclass
class Checkpoint:
    """A registry model's weights and the recipe to rebuild it."""

    model: str
    kwargs: dict
    state_dict: dict
    meta: dict = field(default_factory=dict)

    def build(self) -> nn.Module:
        """Rebuild the architecture with ``models.build`` and load the weights (strict)."""
        import models  # NOTE: lazy, so graphprune.train does not require the zoo to import.

        net = models.build(self.model, **self.kwargs)
        net.load_state_dict(self.state_dict)
        return net


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel``/``DataParallel`` wrapper, else ``model``."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def save_checkpoint(path: str | Path, model: nn.Module, name: str, kwargs: dict | None = None,
                    meta: dict | None = None) -> None:
    """Save ``model``'s fp32 ``state_dict`` with the registry ``name``/``kwargs`` that rebuild it."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in unwrap(model).state_dict().items()}
    payload = {"format": FORMAT, "model": name, "kwargs": dict(kwargs or {}), "state_dict": state,
               "meta": dict(meta or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a file written by :func:`save_checkpoint` (safe ``weights_only`` load)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file (format={payload.get('format')!r})")
    return Checkpoint(payload["model"], payload["kwargs"], payload["state_dict"], payload.get("meta", {}))


def save_module(path: str | Path, model: nn.Module) -> None:
    """Pickle the whole module (for pruned networks)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(unwrap(model), path)


def load_module(path: str | Path) -> nn.Module:
    """Unpickle a module saved by :func:`save_module`. Executes pickled code: trusted files only."""
    return torch.load(path, map_location="cpu", weights_only=False)

"""Saving and loading weights.

Two formats, because pruned networks no longer match their factory:

* **registry checkpoint** (:func:`save_checkpoint`): a ``state_dict`` plus the
  registry name and factory kwargs that rebuild the architecture — small,
  portable, loads with ``weights_only=True``. Used for the baselines.
* **module file** (:func:`save_module`): the whole pickled ``nn.Module`` (an
  ``fx.GraphModule`` pickles its generated code), for pruned networks whose
  layer widths exist nowhere else. Loading unpickles, which runs code stored in
  the file, so :func:`load_module` refuses unless called with ``trusted=True``.

Both are written atomically (temporary file beside the target, then rename):
a failed save leaves the previous file intact.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..export.saving import UNPICKLE_RISK, UntrustedFileError, refusal_reason
from ..files import atomic_path

__all__ = ["Checkpoint", "NotACheckpointError", "UntrustedFileError", "save_checkpoint", "load_checkpoint",
           "save_module", "load_module", "unwrap"]

FORMAT = "graphprune.checkpoint/1"


class NotACheckpointError(ValueError):
    """The file is not a weights-only ``graphprune.checkpoint/1`` registry checkpoint."""


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
    """Save ``model``'s fp32 ``state_dict`` with the registry ``name``/``kwargs`` that rebuild it (atomically)."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in unwrap(model).state_dict().items()}
    payload = {"format": FORMAT, "model": name, "kwargs": dict(kwargs or {}), "state_dict": state,
               "meta": dict(meta or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a file written by :func:`save_checkpoint` (``weights_only``: no code from the file runs).

    Raises:
        NotACheckpointError: the file needs a full unpickle (a pickled module, a legacy ``.tar`` torch file,
            anything crafted) or holds something other than a registry checkpoint.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as error:
        # NOTE: RuntimeError is what torch raises for legacy .tar files under weights_only.
        raise NotACheckpointError(f"{path}: not a weights-only {FORMAT} file ({refusal_reason(error)})") from None
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found != FORMAT:
        raise NotACheckpointError(f"{path}: not a {FORMAT} file (format={found!r})")
    return Checkpoint(payload["model"], payload["kwargs"], payload["state_dict"], payload.get("meta", {}))


def save_module(path: str | Path, model: nn.Module) -> None:
    """Pickle the whole module (for pruned networks), atomically; an unpicklable module writes nothing."""
    with atomic_path(path) as tmp:
        torch.save(unwrap(model), tmp)


def load_module(path: str | Path, trusted: bool = False) -> nn.Module:
    """Unpickle a module saved by :func:`save_module` (or by ``graphprune.export.save_pruned``).

    Args:
        path: the file.
        trusted: must be True. Unpickling runs code stored in the file: a crafted file can do anything
            your user account can. Pass it only for files you wrote yourself.

    Raises:
        UntrustedFileError: ``trusted`` is not True (nothing is read).
    """
    if trusted is not True:
        raise UntrustedFileError(
            f"{path}: load_module unpickles, and {UNPICKLE_RISK}. Pass trusted=True (CLI: --trust-file) if "
            f"you wrote this file; registry checkpoints load safely with load_checkpoint, pruned models "
            f"with graphprune.export.load_pruned(path, model=..., example_inputs=...)")
    from ..export.saving import load_pruned

    return load_pruned(path, trusted=True)  # NOTE: reads plain pickled modules and pruned/2 files alike

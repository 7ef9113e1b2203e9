"""Train/eval flags are per module: switching a model for a while must give each module its own flag back.

``model.train(was_training)`` sets *every* submodule to the root's flag: a user's BatchNorm frozen in eval inside
a model in train mode (a common fine-tuning setup) would silently come back in train mode and its running
statistics would drift.  Every place that evaluates a model it does not own the modes of uses :func:`eval_mode`.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

__all__ = ["eval_mode", "training_flags", "restore_training_flags"]


def training_flags(model: torch.nn.Module) -> list[tuple[torch.nn.Module, bool]]:
    """Every module of ``model`` (shared ones once) with its ``training`` flag."""
    return [(m, m.training) for m in model.modules()]


def restore_training_flags(flags: list[tuple[torch.nn.Module, bool]]) -> None:
    for module, training in flags:
        module.training = training


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode inside the block; afterwards every submodule gets its own flag back."""
    flags = training_flags(model)
    model.eval()
    try:
        yield model
    finally:
        restore_training_flags(flags)

"""Hugging Face configs: the width fields a pruned ``PreTrainedModel`` can still state truthfully.

Reads: a model whose modules already have their pruned sizes (``resize_modules``).  Rewrites fields of its
``config`` (shared by every submodule that holds it), and only these, each when every place it describes has
one width:

1. ``hidden_size``: the input embedding's ``embedding_dim`` (the residual stream, one coupled group).
2. ``intermediate_size``: the ``out_features`` of every feed-forward input projection
   (``*.intermediate.dense``, ``*.mlp.fc1``, ``*.mlp.up_proj``, ``*.mlp.gate_proj``); left alone, with a
   note, when the layers were pruned to different widths — one number cannot describe them, so a fresh
   instance is built with ``rebuild_like`` (per-module shapes from the saved ``state_dict``) instead.

Head counts and head sizes are not updated: graphprune prunes channels inside heads, which a config cannot
state (``num_attention_heads * head_dim`` no longer equals anything uniform); where the forward reads them,
the in-place check (``passes.in_place``) sees the baked size and the graph is returned.
"""
from __future__ import annotations

import torch.nn as nn

__all__ = ["is_hf_model", "update_config", "FEED_FORWARD_INPUTS"]

FEED_FORWARD_INPUTS = ("intermediate.dense", "mlp.fc1", "mlp.up_proj", "mlp.gate_proj")


def is_hf_model(model: nn.Module) -> bool:
    """A transformers ``PreTrainedModel`` (checked by class name: transformers is not imported here)."""
    return any(c.__name__ == "PreTrainedModel" for c in type(model).__mro__) and hasattr(model, "config")


def _set(config, field: str, value: int, notes: list[str]) -> None:
    old = getattr(config, field, None)
    if isinstance(old, int) and old != value:
        setattr(config, field, value)
        notes.append(f"config.{field} {old} -> {value}")


def update_config(model: nn.Module) -> list[str]:
    """Update ``model.config``'s width fields (module docstring); return one note per field changed or left."""
    if not is_hf_model(model):
        return []
    notes: list[str] = []
    config = model.config
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if isinstance(embeddings, nn.Embedding):
        _set(config, "hidden_size", embeddings.embedding_dim, notes)
    widths = {m.out_features for name, m in model.named_modules()
              if isinstance(m, nn.Linear) and name.endswith(FEED_FORWARD_INPUTS)}
    if len(widths) == 1:
        _set(config, "intermediate_size", widths.pop(), notes)
    elif len(widths) > 1 and hasattr(config, "intermediate_size"):
        notes.append(f"config.intermediate_size left at {config.intermediate_size}: the layers have widths "
                     f"{sorted(widths)}; build a fresh instance with graphprune.rebuild_like(model, state_dict)")
    return notes

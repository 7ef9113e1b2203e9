"""Pass: slice every parameter and buffer to the kept indices of each of its dims.

Reads: the dependency graph (kept indices per parameter dim).  Rewrites: the GraphModule's parameters
and buffers in place (new, smaller tensors; ``requires_grad`` preserved; tied weights stay tied).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx

from ..depgraph import DependencyGraph, Dim

__all__ = ["slice_parameters"]


def _sliced(tensor: torch.Tensor, graph: DependencyGraph, key: str, keep: np.ndarray) -> torch.Tensor | None:
    out, changed = tensor.detach(), False
    for axis in range(tensor.ndim):
        kept = graph.kept_indices(Dim(key, axis), keep)
        if len(kept) != tensor.shape[axis]:
            out = out.index_select(axis, torch.as_tensor(kept, device=tensor.device))
            changed = True
    return _in_layout_of(out, tensor) if changed else None  # index_select already made new memory


def _in_layout_of(out: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """``out`` in ``tensor``'s memory format: a channels_last conv weight stays channels_last (``index_select``
    returns a contiguous tensor, which would silently undo the user's ``model.to(memory_format=...)``)."""
    for fmt, ndim in ((torch.channels_last, 4), (torch.channels_last_3d, 5)):
        if tensor.ndim == ndim and not tensor.is_contiguous() and tensor.is_contiguous(memory_format=fmt):
            return out.contiguous(memory_format=fmt)
    return out


def slice_parameters(gm: fx.GraphModule, graph: DependencyGraph, keep: np.ndarray) -> bool:
    """Slice parameters/buffers of ``gm`` (a copy of ``graph.traced.gm``); return whether anything changed."""
    named = [(n, t, True) for n, t in gm.named_parameters(remove_duplicate=False)]
    named += [(n, t, False) for n, t in gm.named_buffers(remove_duplicate=False)]
    done: dict[str, torch.Tensor] = {}
    changed = False
    for name, tensor, is_param in named:
        key = graph.param_alias.get(f"@{name}", f"@{name}")
        if key not in done:
            new = _sliced(tensor, graph, key, keep)
            if new is None:
                continue
            done[key] = torch.nn.Parameter(new, requires_grad=tensor.requires_grad) if is_param else new
        new = done[key]
        owner_name, _, attr = name.rpartition(".")
        owner = gm.get_submodule(owner_name) if owner_name else gm
        if is_param:
            setattr(owner, attr, new)
        else:
            owner._buffers[attr] = new
        changed = True
    return changed

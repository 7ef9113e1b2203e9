"""Size attributes from tensor shapes: a module whose tensors were sliced gets the attributes that say so.

Reads: a module whose parameters and buffers already have their new (pruned) shapes, and whose size
attributes still hold the old values.  Rewrites those attributes, one row of ``SIZE_RULES`` per module type
(the first row whose type the module is an instance of wins, so subclasses such as timm's ``LayerNorm2d``
take their base's row):

1. ``Conv1d/2d/3d``: ``out_channels = w.shape[0]``; a depthwise-like conv (one input channel per group),
   and a conv of at least 4 groups whose per-group input width is unchanged (``grouped="auto"``'s whole
   groups, ``depgraph/conv_groups.py``), loses whole groups, ``groups = out_channels / (old out_channels /
   old groups)``; other convs keep their group count; ``in_channels = w.shape[1] * groups``.
2. ``ConvTranspose``: ``in_channels = w.shape[0]``, ``out_channels = w.shape[1] * groups``.
3. ``Linear``: ``out_features, in_features = w.shape``; ``Embedding``: ``num_embeddings, embedding_dim``.
4. ``BatchNorm`` / ``InstanceNorm``: ``num_features`` from γ or the running mean; ``PReLU``:
   ``num_parameters``; ``LayerNorm`` / ``RMSNorm``: ``normalized_shape = w.shape``; ``GroupNorm``:
   ``num_channels``, whole groups dropped (``num_groups`` scaled).  A norm without tensors keeps its
   attributes (nothing says its new size).
5. ``MultiheadAttention``: ``embed_dim = kdim = vdim``, ``head_dim = embed_dim / num_heads``, and its
   ``out_proj`` as a Linear (graphprune keeps the head count and rescales the query weights itself).
6. Hugging Face ``Conv1D`` (GPT-2's transposed Linear, matched by class name): ``nx, nf = w.shape``.

``rebuild_like(model, state_dict)`` uses the same rows to build a fresh instance at the widths of a pruned
``state_dict`` (save a pruned model's ``state_dict()``, construct the class again, ``rebuild_like`` it).
"""
from __future__ import annotations

import copy
from typing import Callable, Mapping

import torch
import torch.nn as nn

from ..depgraph.conv_groups import AUTO_MIN_GROUPS

__all__ = ["SIZE_RULES", "resize_attributes", "rebuild_like"]


def _conv(m: nn.Module) -> None:
    out, per_group_in = m.weight.shape[0], m.in_channels // m.groups
    per_group_out = m.out_channels // m.groups
    # NOTE: shapes alone cannot tell whole groups from offsets when the per-group input width is unchanged;
    # this follows grouped="auto" (depgraph/conv_groups.py).  A wrong guess fails loudly (the input width no
    # longer fits); prune's in-place copy and saved files carry the real group count.
    whole = per_group_in == 1 or (m.groups >= AUTO_MIN_GROUPS and m.weight.shape[1] == per_group_in)
    if m.groups > 1 and whole and out % per_group_out == 0:
        m.groups = out // per_group_out
    m.out_channels, m.in_channels = out, m.weight.shape[1] * m.groups


def _conv_transpose(m: nn.Module) -> None:
    m.in_channels, m.out_channels = m.weight.shape[0], m.weight.shape[1] * m.groups


def _linear(m: nn.Module) -> None:
    m.out_features, m.in_features = m.weight.shape


def _embedding(m: nn.Module) -> None:
    m.num_embeddings, m.embedding_dim = m.weight.shape


def _num_features(m: nn.Module) -> None:
    t = m.weight if m.weight is not None else getattr(m, "running_mean", None)
    if t is not None:
        m.num_features = t.shape[0]


def _prelu(m: nn.Module) -> None:
    m.num_parameters = m.weight.shape[0]


def _normalized_shape(m: nn.Module) -> None:
    if getattr(m, "weight", None) is not None:
        m.normalized_shape = tuple(m.weight.shape)


def _group_norm(m: nn.Module) -> None:
    if m.weight is not None:
        per_group = m.num_channels // m.num_groups
        m.num_channels = m.weight.shape[0]
        m.num_groups = m.num_channels // per_group


def _hf_conv1d(m: nn.Module) -> None:
    m.nx, m.nf = m.weight.shape  # NOTE: a Linear with its weight transposed (GPT-2)


def _multihead_attention(m: nn.Module) -> None:
    if m.in_proj_weight is None:
        return  # separate q/k/v projections: graphprune freezes those (no rule), nothing changed
    m.embed_dim = m.kdim = m.vdim = m.in_proj_weight.shape[1]
    m.head_dim = m.embed_dim // m.num_heads
    _linear(m.out_proj)


_NORMALIZED = (nn.LayerNorm,) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())

SIZE_RULES: list[tuple[tuple[type | str, ...], Callable[[nn.Module], None]]] = [
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d), _conv),
    ((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), _conv_transpose),
    ((nn.Linear,), _linear),
    ((nn.Embedding,), _embedding),
    ((nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm), _num_features),
    ((nn.PReLU,), _prelu),
    (_NORMALIZED, _normalized_shape),
    ((nn.GroupNorm,), _group_norm),
    ((nn.MultiheadAttention,), _multihead_attention),
    (("transformers.pytorch_utils.Conv1D",), _hf_conv1d),  # by name: transformers is not imported here
]


def _is_instance(module: nn.Module, types: tuple) -> bool:
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(module).__mro__}
    return any(t in names if isinstance(t, str) else isinstance(module, t) for t in types)


def resize_attributes(module: nn.Module) -> bool:
    """Apply ``module``'s row of ``SIZE_RULES`` (module docstring); False when no row knows its type."""
    for types, fn in SIZE_RULES:
        if _is_instance(module, types):
            fn(module)
            return True
    return False


def _resized_like(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    new = torch.empty(shape, dtype=t.dtype, device=t.device)
    return nn.Parameter(new, t.requires_grad) if isinstance(t, nn.Parameter) else new


def rebuild_like(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, load: bool = True,
                 attributes: Mapping[str, int] | None = None) -> nn.Module:
    """A copy of ``model`` (a freshly built instance of the original architecture) at the widths of
    ``state_dict`` (a pruned model's ``state_dict()``, same keys): every tensor whose shape differs is
    replaced by one of the saved shape, size attributes follow (``SIZE_RULES``), a Hugging Face config gets
    the uniform widths (``hf_config.update_config``), and with ``load`` the saved values are loaded (strict).

    ``attributes``: int attributes by qualified name that the code reads as sizes and no tensor shape states
    (``PruneReport.size_attributes`` of the prune, e.g. torchvision ViT's ``{"hidden_dim": 384}``).

    ``model`` itself is not modified.  Raises ``KeyError`` naming a saved key or attribute the model does not
    have.
    """
    from ..parametrized import bake_parametrizations
    from .hf_config import update_config

    fresh = copy.deepcopy(model)
    bake_parametrizations(fresh)  # NOTE: as every private copy prune slices (graphprune/parametrized.py)
    named = dict(fresh.named_parameters(remove_duplicate=False)) | dict(fresh.named_buffers(remove_duplicate=False))
    unknown = [k for k in state_dict if k not in named]
    if unknown:
        raise KeyError(f"rebuild_like: the saved state_dict has keys the model does not: {unknown[:5]}; pass a "
                       "fresh instance of the class the pruned model was made from")
    replaced: dict[int, torch.Tensor] = {}  # tied tensors stay tied
    touched: set[str] = set()
    for name, saved in state_dict.items():
        t = named[name]
        if t.shape == saved.shape:
            continue
        owner_name, _, attr = name.rpartition(".")
        owner = fresh.get_submodule(owner_name)
        new = replaced.setdefault(id(t), _resized_like(t, saved.shape))
        store = owner._parameters if attr in owner._parameters else owner._buffers
        store[attr] = new
        touched.add(owner_name)
    for name in sorted(touched):
        resize_attributes(fresh.get_submodule(name))
    for name, value in (attributes or {}).items():
        owner_name, _, attr = name.rpartition(".")
        owner = fresh.get_submodule(owner_name)
        if type(getattr(owner, attr, None)) is not int:
            raise KeyError(f"rebuild_like: attribute {name!r} is not an int attribute of the model")
        setattr(owner, attr, int(value))
    update_config(fresh)
    if load:
        fresh.load_state_dict(state_dict, strict=True)
    return fresh

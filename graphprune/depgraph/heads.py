"""Attention units: what one prunable unit of a multi-head attention is.

Attention code splits a width ``C = H * d`` into heads: ``x.reshape(B, N, H, d)`` (or ``(B, N, 3, H, d)`` for
a fused qkv projection), computes ``softmax(q k^T * s) v`` per head, and merges the heads back with
``reshape(B, N, H * d)`` before the output projection.  Channel ``e`` of the projection is head ``e // d``,
offset ``e % d``.  Which of the two coordinates carries the unit is a choice (``prune(..., attention=...)``):

* ``"heads"`` — a unit is one whole head: its ``d`` rows of q, k and v, and the matching ``d`` input columns of
  the output projection.  The per-head GEMMs keep their shape ``(N, d) x (d, N)``; only their number shrinks.
* ``"head_dim"`` — a unit is one offset ``j``, removed from every head at once (``H`` channels per unit); ``d``
  shrinks in every head.  The softmax scale keeps the *original* ``1/sqrt(d)`` (the SDPA rewrite passes
  ``scale=`` explicitly; ``nn.MultiheadAttention``'s query weights are rescaled).
* ``"both"`` — both kinds of units, one after the other: the heads are pruned first, then offsets within the
  heads that are left (``api.prune`` runs the search twice; see ``split_budget``).
* ``"auto"`` (default) — ``"heads"`` when every attention in the model has at least ``AUTO_MIN_HEADS`` heads
  (kv heads for GQA) and none is an ``nn.MultiheadAttention`` (see ``auto_units``), else ``"head_dim"``.  Rule: whole heads keep the per-head GEMM shape, so they are at
  least as fast per MAC saved; but
  with few heads one head is a coarse step (1/3 of the attention for ViT-Tiny's 3 heads), too coarse for a
  budget search, so offsets are used there.  Measured (``bench/attention_units.py``, ORT CPU, equal MACs): whole
  heads 0.93-1.0x the time of shrunk head dims at 50-75 % kept, 0.5-0.6x at 25 % (``d = 16`` GEMMs are slow).

How the choice is made: the reshape rule (``rules/shape.py``, ``_carry``) asks ``split_order`` which output axis
of a split ``C -> (..., H, d)`` carries the channels.  Only splits whose result reaches a product (SDPA,
matmul, bmm, einsum) within ``MAX_WALK`` ops count as head splits (a channel shuffle does not).  The merge back
``(H, d) -> C`` follows automatically: it picks the axis that is still free.  If the preferred axis ends up
frozen, the builder's retry takes the other one.

GQA / MQA: ``repeat_kv`` (``kv[:, :, None].expand(B, Hkv, n_rep, N, d).reshape(B, Hkv * n_rep, N, d)``) and SDPA's
``enable_gqa`` map query head ``h`` to kv head ``h // n_rep``: with whole heads, a unit is one kv head and its
``n_rep`` query heads, so the ratio stays valid.  With one kv head (MQA) there is no kv head to remove: the
``expand`` copies are prunable (``RuleContext.touch_copies``), so a unit is one query head with its copy of k
and v (query heads within the group).  RoPE slices the head dim (``x[..., :d/2]``, ``x[..., d/2:]``): with whole
heads it is untouched; with offsets the slice/cat index maps make a unit the pair ``(j, j + d/2)``.  A half
computed at run time (``x.shape[-1] // 2`` under fx) freezes the head dim instead, with that reason.

Dead heads: a head whose value rows (with bias) or output-projection columns are all zero contributes exactly
zero; with whole-head units it is one unit, and ``graphprune.dead_units`` scores it 0 so it goes first.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .rule_context import Dim

__all__ = ["ATTENTION_UNITS", "AUTO_MIN_HEADS", "HeadSplit", "check_attention", "attention_of", "feeds_attention",
           "has_attention", "split_order", "auto_units", "heads_kept", "describe_heads", "split_budget"]

ATTENTION_UNITS = ("auto", "heads", "head_dim", "both")
AUTO_MIN_HEADS = 8
MAX_WALK = 16

_aten = torch.ops.aten
_PRODUCTS = {F.scaled_dot_product_attention, torch.matmul, operator.matmul, torch.bmm, torch.einsum,
             _aten.scaled_dot_product_attention.default, _aten.matmul.default, _aten.bmm.default,
             _aten.einsum.default}
_PRODUCT_METHODS = {"matmul", "bmm", "__matmul__"}
_LAYERS = {F.linear, F.conv1d, F.conv2d, F.conv3d, _aten.linear.default, _aten.addmm.default, _aten.mm.default,
           _aten.conv1d.default, _aten.conv2d.default, _aten.conv3d.default}


@dataclass(frozen=True)
class HeadSplit:
    """One reshape ``C -> (..., H, d)`` whose result feeds attention.

    Attributes:
        node: the reshape node's name; value: its output value.
        head_axis / dim_axis: the output axes of ``H`` and ``d``.
        heads / head_dim: their sizes.
        units: what carries the channels there, ``"heads"`` or ``"head_dim"``.
        attention: the attention it feeds (its last product node; the module node for ``MultiheadAttention``).
    """

    node: str
    value: str
    head_axis: int
    dim_axis: int
    heads: int
    head_dim: int
    units: str
    attention: str = ""


def check_attention(value) -> str:
    """``value`` if it names an attention unit kind, else a ValueError naming the choices."""
    if not isinstance(value, str) or value not in ATTENTION_UNITS:
        raise ValueError(f"attention must be one of {list(ATTENTION_UNITS)} (what one prunable unit of a multi-head "
                         f"attention is: a whole head, one offset in every head, or both); got {value!r:.60}")
    return value


def _is_product(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _PRODUCT_METHODS
    try:
        return node.op == "call_function" and node.target in _PRODUCTS
    except TypeError:  # unhashable target
        return False


def _is_layer(node: fx.Node) -> bool:
    if node.op == "call_module":
        return True
    try:
        return node.op == "call_function" and node.target in _LAYERS
    except TypeError:
        return False


def has_attention(gm: fx.GraphModule) -> bool:
    """Whether ``gm`` may hold multi-head attention: a product (SDPA, matmul, bmm, einsum) or a leaf
    ``nn.MultiheadAttention``."""
    modules = dict(gm.named_modules())
    return any(_is_product(n) or (n.op == "call_module" and isinstance(modules.get(n.target), nn.MultiheadAttention))
               for n in gm.graph.nodes)


def attention_of(node: fx.Node) -> str | None:
    """The attention ``node``'s result feeds, named by its last product (SDPA, or ``attn @ v``), or None.

    Walks users up to ``MAX_WALK`` ops deep, never through a layer (linear, conv, module call): a split that
    reaches no product is not a head split (a channel shuffle).  q, k and v splits of one attention name the
    same product (for manual attention q and k reach ``q @ k^T`` first, then ``attn @ v``: the deepest wins).
    """
    seen, frontier, last = {node}, [node], None
    for _ in range(MAX_WALK):
        nxt = []
        for n in frontier:
            for user in n.users:
                if user in seen or _is_layer(user) or user.op == "output":
                    continue
                if _is_product(user):
                    last = user.name
                seen.add(user)
                nxt.append(user)
        if not nxt:
            break
        frontier = nxt
    return last


def feeds_attention(node: fx.Node) -> bool:
    """Whether ``node``'s result reaches a product before any layer: a head split (see ``attention_of``)."""
    return attention_of(node) is not None


def split_order(ctx, out: str, out_axes: list[int], candidates: list[int]) -> list[int]:
    """The order in which a split's output axes are tried to carry the channels.

    ``candidates`` index ``out_axes`` (axes of size > 1), innermost first (the default: ``d`` of a head split).
    For a head split under ``"heads"`` the next-to-innermost axis (``H``) goes first.  Every head split is
    recorded on the builder (``ctx.head_splits``) for ``"auto"`` and for reports.
    """
    attention = attention_of(ctx.node) if len(candidates) >= 2 else None
    if attention is None or ctx.attention not in ("heads", "head_dim"):
        return candidates
    d_axis, h_axis = out_axes[candidates[0]], out_axes[candidates[1]]
    shape = ctx.shape(out)
    ctx.head_splits[ctx.node.name] = HeadSplit(ctx.node.name, out, h_axis, d_axis, shape[h_axis], shape[d_axis],
                                               ctx.attention, attention)
    if ctx.attention == "heads":
        return [candidates[1], candidates[0], *candidates[2:]]
    return candidates


def auto_units(splits: list[HeadSplit]) -> str:
    """``"auto"`` resolved: ``"heads"`` when every attention has at least ``AUTO_MIN_HEADS`` heads and none is an
    ``nn.MultiheadAttention`` (one merged width, ``head_axis == dim_axis``), else ``"head_dim"``.

    NOTE: ``MultiheadAttention`` ties its embedding width to whole heads, so there a head unit is a head of every
    layer *and* ``d`` channels of the residual stream at once: a step too coarse for the search (torchvision
    ViT-B/16 kept 12/12 heads and cut the MLPs to ~640) and costly to score (4.7 GB vs 1.3 GB peak, search 7.4 s vs
    0.6 s); ViT-L ran out of 14 GiB.  ``attention="heads"`` still asks for it."""
    if not splits or any(s.head_axis == s.dim_axis for s in splits):
        return "head_dim"
    return "heads" if min(s.heads for s in splits) >= AUTO_MIN_HEADS else "head_dim"


def heads_kept(graph, keep: np.ndarray) -> list[tuple[str, int, int, int, int]]:
    """Per head split: (node, heads kept, heads, head dim kept, head dim), in graph order."""
    out = []
    for split in graph.head_splits.values():
        if split.head_axis == split.dim_axis:  # nn.MultiheadAttention: one merged width C = H * d
            width = graph.dim_size(Dim(split.value, split.head_axis), keep)
            h = width // split.head_dim if split.units == "heads" else split.heads
            d = width // h if h else 0
        else:
            h = graph.dim_size(Dim(split.value, split.head_axis), keep)
            d = graph.dim_size(Dim(split.value, split.dim_axis), keep)
        out.append((split.node, h, split.heads, d, split.head_dim))
    return out


def describe_heads(graph, keep: np.ndarray) -> str:
    """One line: ``attention units heads; heads kept per attention: 3/4 4/4 ...`` (``x kept/d`` where the head
    dim shrank).  Per attention, the split with the most heads speaks (the queries under GQA)."""
    per_attention: dict[str, tuple] = {}
    for split, row in zip(graph.head_splits.values(), heads_kept(graph, keep)):
        key = split.attention or split.node
        if key not in per_attention or row[2] > per_attention[key][2]:
            per_attention[key] = row
    if not per_attention:
        return ""
    parts = [f"{h}/{hh}" + (f"x{d}/{dd}" if d != dd else "") for _, h, hh, d, dd in per_attention.values()]
    return f"attention units {graph.attention}; heads kept per attention: " + " ".join(parts)


def split_budget(budget: float) -> tuple[float, float]:
    """``"both"``: the heads round keeps ``sqrt(budget)`` of the MACs, the offsets round the rest of the way."""
    first = float(np.sqrt(budget))
    return first, budget / first

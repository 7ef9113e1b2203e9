"""Ops that move, split or join channels: reshape family, permute, concat, split/chunk, indexing.

Reshape (view, reshape, flatten, unflatten, squeeze, unsqueeze, ``nn.Flatten``) is handled from shapes:
the input and output are cut into blocks of equal products (row-major order makes this exact).

1. one axis -> one axis: the same channels;
2. several axes -> one (flatten): one input axis *carries* the channels — channel c becomes the block
   of output features whose coordinate on that axis is c (conv channels -> ``C*H*W`` linear features);
   the other merged axes are frozen;
3. one axis -> several (heads split, channel shuffle): one output axis carries the channels; channel
   ``e`` goes to the coordinate of ``e`` on that axis, so pruning index k removes it from every group;
4. anything else: frozen.

Where a choice exists, the first option is tried and the builder retries the next if it ends frozen.
Literal sizes in ``view``/``reshape``/``expand``/``unflatten``/``split`` arguments are rewritten;
sizes computed from ``x.size()`` couple nothing here: ``size_reads.py`` says what they become.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from ..rule_context import Dim
from .size_reads import direct_read
from .table import ZERO_PRESERVING, OpFacts, register, register_method, register_module
from ..heads import split_order  # attention head splits: which axis carries the channels


def reshape_blocks(a: tuple[int, ...], b: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    """Cut two shapes of equal numel into aligned blocks of equal products (size-1 axes alone)."""
    blocks, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        if i < len(a) and a[i] == 1 and (j >= len(b) or b[j] != 1):
            blocks.append(([i], []))
            i += 1
            continue
        if j < len(b) and b[j] == 1 and (i >= len(a) or a[i] != 1):
            blocks.append(([], [j]))
            j += 1
            continue
        if i >= len(a) or j >= len(b):
            return []
        ins, outs, pa, pb = [i], [j], a[i], b[j]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb and i < len(a):
                ins.append(i); pa *= a[i]; i += 1
            elif pb < pa and j < len(b):
                outs.append(j); pb *= b[j]; j += 1
            else:
                return []
        blocks.append((ins, outs))
    return blocks


def _carry(ctx, src: str, src_axes: list[int], dst: str, dst_axis: int, merge: bool) -> None:
    """Couple one axis of a merged/split block with the single axis on the other side."""
    sizes = [ctx.shape(src)[a] for a in src_axes]
    candidates = [k for k, s in enumerate(sizes) if s > 1]
    if merge:  # prefer axes still free, outermost first
        candidates.sort(key=lambda k: (ctx.is_frozen(Dim(src, src_axes[k])), k))
    else:  # split: innermost first; attention head splits may put the head axis first (depgraph/heads.py)
        candidates = split_order(ctx, src, src_axes, candidates[::-1])
    if not candidates:
        return
    k = candidates[ctx.choose([Dim(src, src_axes[c]) for c in candidates])]
    moved = np.moveaxis(np.arange(int(np.prod(sizes))).reshape(sizes), k, 0)
    coords = np.repeat(np.arange(sizes[k]), moved[0].size)
    ctx.link(Dim(src, src_axes[k]), coords, Dim(dst, dst_axis), moved.ravel())


def reshape_like(ctx, x: str | None, out: str | None) -> None:
    if x is None or out is None:
        return
    for ins, outs in reshape_blocks(ctx.shape(x), ctx.shape(out)):
        if len(ins) == 1 and len(outs) == 1:
            ctx.same(Dim(x, ins[0]), Dim(out, outs[0]))
        elif len(outs) == 1 and ins:
            _carry(ctx, x, ins, out, outs[0], merge=True)
        elif len(ins) == 1 and outs:
            _carry(ctx, out, outs, x, ins[0], merge=False)


def couple_size_args(ctx, out: str, entries: list, first_axis: int = 0) -> None:
    """An output axis the op's own rule left alone (``expand``'s new axes) whose size was read from tensor
    axis d: the two shrink together (equal *counts* are needed; identical elements is stronger, and valid).

    NOTE: axes the rule already couples (a reshape's, from its input) are not coupled again to where their
    size was read: ``B, N, C = x.shape; … .reshape(B, N, C)`` gives the attention's inner width with the
    residual width's number; the rewrite (``bake_size_reads``) makes such an entry the planned size instead.
    """
    for j, e in enumerate(entries):
        src = direct_read(e, ctx._b.shapes)
        d = Dim(out, first_axis + j)
        if src is not None and d.axis < ctx.ndim(out) and d not in ctx.touched and \
                ctx.shape(src.value)[src.axis] == ctx.shape(out)[d.axis] and src.value != out:
            ctx.same(d, src)


def _shape_entries(node: fx.Node, first: int):
    """(position container, values) of a shape given as varargs or as one list/tuple argument."""
    rest = node.args[first:]
    if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
        return "list", list(rest[0])
    return "varargs", list(rest)


def _rewrite_shape_args(rctx, first: int, out_axis0: int = 0, key: str = "shape") -> None:
    if key in rctx.node.kwargs:
        entries, kind = list(rctx.node.kwargs[key]), "kw"
    else:
        kind, entries = _shape_entries(rctx.node, first)
    new = []
    for j, e in enumerate(entries):
        if isinstance(e, int) and e != -1:
            e = rctx.new_size(Dim(rctx.out, out_axis0 + j))
        new.append(e)
    if kind == "kw":
        rctx.set_kwarg(key, tuple(new))
    elif kind == "list":
        rctx.node.args = rctx.node.args[:first] + (tuple(new),)
    else:
        rctx.node.args = rctx.node.args[:first] + tuple(new)


def _rewrite_view(rctx) -> None:
    _rewrite_shape_args(rctx, 1)


@register_method("view", "reshape", rewrite=_rewrite_view, facts=ZERO_PRESERVING)
@register(torch.reshape, rewrite=_rewrite_view, facts=ZERO_PRESERVING)
def view(ctx) -> None:
    reshape_like(ctx, ctx.value_of(ctx.node.args[0]), ctx.out)


@register_method("flatten", "squeeze", "unsqueeze", facts=ZERO_PRESERVING)
@register(torch.flatten, facts=ZERO_PRESERVING)
@register(torch.squeeze, torch.unsqueeze)
@register_module(nn.Flatten, facts=ZERO_PRESERVING)
def flatten(ctx) -> None:
    reshape_like(ctx, ctx.value_of(ctx.node.args[0]), ctx.out)


def same_shape_as_other(ctx) -> None:
    """``op_as(x, other)``: the output takes ``other``'s shape, so each output axis must shrink with the
    same axis of ``other`` (coupling them as identical channels is stronger than needed, and valid)."""
    arg = ctx.node.args[1] if len(ctx.node.args) > 1 else ctx.node.kwargs.get("other")
    other, out = ctx.value_of(arg), ctx.out
    if other is None or out is None or ctx.shape(other) != ctx.shape(out):
        return
    for axis in range(ctx.ndim(out)):
        ctx.same(Dim(out, axis), Dim(other, axis))


@register_method("view_as", "reshape_as")
def reshape_as(ctx) -> None:
    reshape_like(ctx, ctx.value_of(ctx.node.args[0]), ctx.out)
    same_shape_as_other(ctx)


def _rewrite_unflatten(rctx) -> None:
    dim = rctx.arg(1, "dim")
    nd_in = rctx.ndim(rctx.value_of(rctx.node.args[0]))
    dim = dim % nd_in
    sizes = rctx.arg(2, "sizes")
    new = [rctx.new_size(Dim(rctx.out, dim + j)) if isinstance(s, int) and s != -1 else s
           for j, s in enumerate(sizes)]
    rctx.set_arg(2, "sizes", tuple(new))


@register_method("unflatten", rewrite=_rewrite_unflatten)
@register(torch.unflatten, rewrite=_rewrite_unflatten)
def unflatten(ctx) -> None:
    reshape_like(ctx, ctx.value_of(ctx.node.args[0]), ctx.out)


def _rewrite_unflatten_module(rctx) -> None:
    m = rctx.module
    dim = m.dim % rctx.ndim(rctx.value_of(rctx.node.args[0]))
    m.unflattened_size = tuple(rctx.new_size(Dim(rctx.out, dim + j)) for j in range(len(m.unflattened_size)))


@register_module(nn.Unflatten, rewrite=_rewrite_unflatten_module)
def unflatten_module(ctx) -> None:
    reshape_like(ctx, ctx.value_of(ctx.node.args[0]), ctx.out)


def _permutation(ctx) -> list[int] | None:
    node, x = ctx.node, ctx.value_of(ctx.node.args[0])
    nd = ctx.ndim(x)
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    if name == "permute":
        _, dims = _shape_entries(node, 1)
        dims = list(node.kwargs.get("dims", dims))
        return [d % nd for d in dims] if all(isinstance(d, int) for d in dims) else None
    if name in ("transpose", "swapaxes", "swapdims"):
        d0, d1 = ctx.arg(1, "dim0"), ctx.arg(2, "dim1")
        if not (isinstance(d0, int) and isinstance(d1, int)):
            return None
        perm = list(range(nd))
        perm[d0 % nd], perm[d1 % nd] = perm[d1 % nd], perm[d0 % nd]
        return perm
    if name == "t":
        return list(range(nd))[::-1]
    return None


@register_method("permute", "transpose", facts=ZERO_PRESERVING)
@register_method("swapaxes", "swapdims", "t")
@register(torch.permute, torch.transpose, facts=ZERO_PRESERVING)
@register(torch.swapaxes, torch.t)
def permute(ctx) -> None:
    x, out = ctx.value_of(ctx.node.args[0]), ctx.out
    perm = _permutation(ctx) if x is not None and out is not None else None
    if perm is None:
        return
    for o, i in enumerate(perm):
        ctx.same(Dim(x, i), Dim(out, o))


@register(torch.cat, torch.concat, torch.concatenate, facts=OpFacts(zero_preserving=True, combine="concat"))
def cat(ctx) -> None:
    tensors, out = ctx.arg(0, "tensors"), ctx.out
    dim = ctx.arg(1, "dim", 0)
    values = [ctx.value_of(t) for t in tensors] if isinstance(tensors, (list, tuple)) else []
    if out is None or not values or None in values or not isinstance(dim, int):
        return
    nd = ctx.ndim(out)
    dim %= nd
    offset = 0
    for v in values:
        for a in range(nd):
            if a != dim:
                ctx.same(Dim(v, a), Dim(out, a))
        n = ctx.shape(v)[dim]
        ctx.link(Dim(v, dim), np.arange(n), Dim(out, dim), np.arange(offset, offset + n))
        offset += n


@register(torch.stack)
def stack(ctx) -> None:
    tensors, out = ctx.arg(0, "tensors"), ctx.out
    dim = ctx.arg(1, "dim", 0)
    values = [ctx.value_of(t) for t in tensors] if isinstance(tensors, (list, tuple)) else []
    if out is None or not values or None in values or not isinstance(dim, int):
        return
    dim %= ctx.ndim(out)
    for v in values:
        for a in range(ctx.ndim(v)):
            ctx.same(Dim(v, a), Dim(out, a if a < dim else a + 1))


def _rewrite_split(rctx) -> None:
    x = rctx.node.args[0]
    dim = rctx.arg(2, "dim", 0) % rctx.ndim(rctx.value_of(x))
    sizes = [rctx.new_size(Dim(item, dim)) for item in rctx.outs]
    rctx.replace_call(torch.split, (x, sizes, dim))


@register_method("split", "chunk", rewrite=_rewrite_split, facts=ZERO_PRESERVING)
@register_method("tensor_split", rewrite=_rewrite_split)
@register(torch.split, torch.chunk, torch.tensor_split, rewrite=_rewrite_split)
def split(ctx) -> None:
    split_into(ctx, ctx.value_of(ctx.node.args[0]), ctx.outs, ctx.arg(2, "dim", 0))


def split_into(ctx, x: str | None, items: list[str], dim) -> None:
    """Consecutive pieces of ``dim``: item k's element j is input element ``offset_k + j``; other axes pass."""
    if x is None or not items or not isinstance(dim, int):
        return
    nd = ctx.ndim(x)
    dim %= nd
    offset = 0
    for item in items:
        for a in range(nd):
            if a != dim:
                ctx.same(Dim(x, a), Dim(item, a))
        n = ctx.shape(item)[dim]
        ctx.link(Dim(x, dim), np.arange(offset, offset + n), Dim(item, dim), np.arange(n))
        offset += n
    ctx.touch(Dim(x, dim))


@register_method("unbind")
@register(torch.unbind)
def unbind(ctx) -> None:
    x, items = ctx.value_of(ctx.node.args[0]), ctx.outs
    dim = ctx.arg(1, "dim", 0)
    if x is None or not isinstance(dim, int):
        return
    dim %= ctx.ndim(x)
    for item in items:
        for a in range(ctx.ndim(item)):
            ctx.same(Dim(x, a if a < dim else a + 1), Dim(item, a))


def _rewrite_expand(rctx) -> None:
    _rewrite_shape_args(rctx, 1, key="size")


@register_method("expand", rewrite=_rewrite_expand, facts=ZERO_PRESERVING)
def expand(ctx) -> None:
    x, out = ctx.value_of(ctx.node.args[0]), ctx.out
    if x is not None and out is not None:
        ctx.broadcast(out, [x])
        couple_size_args(ctx, out, _shape_entries(ctx.node, 1)[1])
        ctx.touch_copies(out, x)  # copies may be pruned (MQA/GQA query heads within a kv group)


@register_method("expand_as", "broadcast_to")
@register(torch.broadcast_to)
def expand_as(ctx) -> None:
    x, out = ctx.value_of(ctx.node.args[0]), ctx.out
    if x is not None and out is not None:
        ctx.broadcast(out, [x])
        if ctx.node.op == "call_method" and ctx.node.target == "expand_as":
            same_shape_as_other(ctx)


@register_method("repeat")
def repeat(ctx) -> None:
    x, out = ctx.value_of(ctx.node.args[0]), ctx.out
    if x is None or out is None:
        return
    _, reps = _shape_entries(ctx.node, 1)
    lead = ctx.ndim(out) - ctx.ndim(x)
    for a in range(ctx.ndim(x)):
        if reps[lead + a] == 1:
            ctx.same(Dim(x, a), Dim(out, lead + a))

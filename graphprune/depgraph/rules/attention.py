"""Products and attention: matmul, einsum, scaled-dot-product attention, ``nn.MultiheadAttention``.

Contracted axes of a product are coupled between operands (q and k share the head dim), output axes to
the operand they come from.  A zeroed contracted channel adds nothing to the sum, so these are
mask-exact.  Attention's softmax scale ``1/sqrt(d)`` would change with the head dim: the rewrite pins it
to the original value (explicit ``scale=`` for SDPA; pre-scaled query weights for ``MultiheadAttention``).

``nn.MultiheadAttention`` ties embed dim, per-head dims and output dim together (one ``embed_dim``):
one unit is channel k of every head (``attention="head_dim"``) or one whole head (``"heads"``; ``num_heads``
shrinks), on the input, the q/k/v projections and the output at once.
"""
from __future__ import annotations

import math
import operator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..heads import HeadSplit
from ..rule_context import Dim
from .table import register, register_method, register_module


def _batch_broadcast(ctx, out: str, operands: list[str], trailing: int) -> None:
    """Right-aligned broadcast of the batch axes (all but the last ``trailing``) onto ``out``."""
    n_out = ctx.ndim(out) - trailing
    for v in operands:
        n = ctx.ndim(v) - trailing
        for a in range(n):
            oa = n_out - n + a
            if oa >= 0 and ctx.shape(v)[a] == ctx.shape(out)[oa]:
                ctx.same(Dim(v, a), Dim(out, oa))


@register(operator.matmul, torch.matmul, torch.bmm)
@register_method("matmul", "bmm", "__matmul__")
def matmul(ctx) -> None:
    a, b, out = ctx.value_of(ctx.node.args[0]), ctx.value_of(ctx.node.args[1]), ctx.out
    if a is None or b is None or out is None or ctx.ndim(a) < 2 or ctx.ndim(b) < 2:
        return
    _batch_broadcast(ctx, out, [a, b], 2)
    na, nb, no = ctx.ndim(a), ctx.ndim(b), ctx.ndim(out)
    ctx.same(Dim(a, na - 1), Dim(b, nb - 2))
    ctx.same(Dim(a, na - 2), Dim(out, no - 2))
    ctx.same(Dim(b, nb - 1), Dim(out, no - 1))
    ctx.macs([Dim(out, i) for i in range(no)] + [Dim(a, na - 1)])


@register(torch.einsum)
def einsum(ctx) -> None:
    eq = ctx.node.args[0]
    ops = list(ctx.node.args[1:])
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = list(ops[0])
    values = [ctx.value_of(o) for o in ops]
    out = ctx.out
    if not isinstance(eq, str) or "->" not in eq or "." in eq or None in values or out is None:
        return
    lhs, rhs = eq.replace(" ", "").split("->")
    subs = lhs.split(",")
    if len(subs) != len(values):
        return
    letters: dict[str, list[Dim]] = {}
    for v, s in zip(values + [out], subs + [rhs]):
        for axis, ch in enumerate(s):
            letters.setdefault(ch, []).append(Dim(v, axis))
    ref_dims = []
    for dims in letters.values():
        sized = [d for d in dims if ctx.shape(d.value)[d.axis] > 1] or dims
        ref = sized[0]
        ref_dims.append(ref)
        for d in sized[1:]:
            ctx.same(ref, d)
    ctx.macs(ref_dims)


def _rewrite_sdpa(rctx) -> None:
    q = rctx.value_of(rctx.node.args[0])
    e_old, e_new = rctx.old_shape(q)[-1], rctx.new_size(Dim(q, rctx.ndim(q) - 1))
    if rctx.arg(6, "scale") is None and e_old != e_new:
        rctx.set_arg(6, "scale", 1.0 / math.sqrt(e_old))


def _couple_gqa_heads(ctx, q: str, k: str, v: str, out: str) -> bool:
    """``enable_gqa``: query head ``h`` attends with kv head ``h // n_rep`` (an index map on the head axis, so a
    unit of whole heads is one kv head with its ``n_rep`` query heads).  False where the layout is not that."""
    n = ctx.ndim(out)
    if n < 3 or ctx.ndim(q) != n or ctx.ndim(k) != n or ctx.ndim(v) != n:
        return False
    hq, hk = ctx.shape(q)[n - 3], ctx.shape(k)[n - 3]
    if hq == hk:
        return True
    if hk == 0 or hq % hk or ctx.shape(v)[n - 3] != hk:
        return False
    ctx.same(Dim(q, n - 3), Dim(out, n - 3))
    ctx.same(Dim(k, n - 3), Dim(v, n - 3))
    heads = np.arange(hq)
    ctx.link(Dim(q, n - 3), heads, Dim(k, n - 3), heads // (hq // hk))
    return True


@register(F.scaled_dot_product_attention, rewrite=_rewrite_sdpa)
def sdpa(ctx) -> None:
    q, k, v = (ctx.value_of(ctx.arg(i, n)) for i, n in enumerate(("query", "key", "value")))
    out = ctx.out
    if None in (q, k, v, out):
        return
    _batch_broadcast(ctx, out, [q, k, v], 2)
    n = ctx.ndim(out)
    if ctx.arg(7, "enable_gqa", False) and not _couple_gqa_heads(ctx, q, k, v, out):
        return
    ctx.same(Dim(q, n - 1), Dim(k, n - 1))
    ctx.same(Dim(q, n - 2), Dim(out, n - 2))
    ctx.same(Dim(k, n - 2), Dim(v, n - 2))
    ctx.same(Dim(v, n - 1), Dim(out, n - 1))
    mask = ctx.value_of(ctx.arg(3, "attn_mask"))
    if mask is not None:
        m = ctx.ndim(mask)
        if ctx.shape(mask)[-1] == ctx.shape(k)[-2]:
            ctx.same(Dim(mask, m - 1), Dim(k, n - 2))
        if m >= 2 and ctx.shape(mask)[-2] == ctx.shape(q)[-2]:
            ctx.same(Dim(mask, m - 2), Dim(q, n - 2))
    rows = [Dim(out, i) for i in range(n - 1)] + [Dim(k, n - 2)]
    ctx.macs(rows + [Dim(q, n - 1)])
    ctx.macs(rows + [Dim(v, n - 1)])


def _rewrite_mha(rctx) -> None:
    m = rctx.module
    old_head, old_heads = m.head_dim, m.num_heads
    e_new = m.in_proj_weight.shape[1]
    kept = rctx.kept(Dim(rctx.value_of(rctx.arg(0, "query")), 2))
    whole_heads = len(kept) % old_head == 0 and np.array_equal(
        kept, (np.unique(kept // old_head)[:, None] * old_head + np.arange(old_head)).ravel())
    m.embed_dim = m.kdim = m.vdim = e_new
    m.num_heads = e_new // old_head if whole_heads else old_heads
    m.head_dim = e_new // m.num_heads
    m.out_proj.in_features, m.out_proj.out_features = m.out_proj.weight.shape[1], m.out_proj.weight.shape[0]
    if m.head_dim != old_head:  # keep softmax(q k^T / sqrt(d_original)) exactly
        factor = math.sqrt(m.head_dim / old_head)
        with torch.no_grad():
            m.in_proj_weight[:e_new] *= factor
            if m.in_proj_bias is not None:
                m.in_proj_bias[:e_new] *= factor


@register_module(nn.MultiheadAttention, rewrite=_rewrite_mha)
def multihead_attention(ctx) -> None:
    m = ctx.module
    args = [ctx.arg(0, "query"), ctx.arg(1, "key"), ctx.arg(2, "value")]
    out = f"{ctx.node.name}#0"
    if not (m._qkv_same_embed_dim and m.bias_k is None and not m.add_zero_attn
            and args[0] is args[1] is args[2] and out in ctx.outs):
        return
    x = ctx.value_of(args[0])
    if x is None or ctx.ndim(x) != 3:
        return
    e, hd = m.embed_dim, m.head_dim
    w_in, b_in = ctx.param("in_proj_weight"), ctx.param("in_proj_bias")
    w_out, b_out = ctx.param("out_proj.weight"), ctx.param("out_proj.bias")
    ctx.same(Dim(x, 0), Dim(out, 0))
    ctx.same(Dim(x, 1), Dim(out, 1))
    ch, rows = np.arange(e), np.arange(3 * e)
    ctx.same(Dim(x, 2), Dim(w_in, 1))
    if ctx.attention == "heads":  # one whole head is one unit (its hd channels)
        ctx.link(Dim(x, 2), ch, Dim(x, 2), ch // hd * hd)
    else:  # channel k of every head is one unit
        ctx.link(Dim(x, 2), ch, Dim(x, 2), ch % hd)
    ctx.head_splits[ctx.node.name] = HeadSplit(ctx.node.name, w_out, 1, 1, m.num_heads, hd, ctx.attention,
                                               ctx.node.name)
    ctx.link(Dim(w_in, 0), rows, Dim(x, 2), rows % e)
    if b_in is not None:
        ctx.same(Dim(b_in, 0), Dim(w_in, 0))
    ctx.link(Dim(w_out, 1), ch, Dim(x, 2), ch)
    ctx.same(Dim(w_out, 0), Dim(out, 2))
    ctx.link(Dim(out, 2), ch, Dim(x, 2), ch)
    if b_out is not None:
        ctx.same(Dim(b_out, 0), Dim(out, 2))
    ctx.source(Dim(w_in, 0))
    ctx.source(Dim(w_out, 0))
    seq = 1 if m.batch_first else 0
    tokens = [Dim(x, 0), Dim(x, 1)]
    ctx.macs(tokens + [Dim(w_in, 1), Dim(w_in, 0)])
    ctx.macs(tokens + [Dim(x, seq), Dim(x, 2)], coef=2.0)
    ctx.macs(tokens + [Dim(w_out, 1), Dim(w_out, 0)])
    ctx.skip.update(v for v in ctx.outs if v != out)

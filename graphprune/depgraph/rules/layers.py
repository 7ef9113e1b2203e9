"""Parametrised layers: convolutions, linear, embeddings and normalisations.

Conventions: a layer's output-feature axis of its weight is a *source* (pruning it saves compute);
input-feature axes couple to the producer's channels.  Grouped convolutions:

1. ``groups == 1``: input channel i is weight column i.
2. depthwise-like (one input channel per group): input channel j and the output channels of group j
   form one set; pruning it removes the whole group and ``groups`` shrinks.
3. other grouped convs, by the builder's ``grouped`` units (``depgraph/conv_groups.py``; ``"auto"`` decides
   per conv by its group count): ``"groups"``: the input and output channels of one group form one set, so
   whole groups go and the group width stays; ``"group_width"``: the k-th channel of every group forms one
   set (on input and output separately), so all groups keep the same width and ``groups`` stays.

GroupNorm prunes whole normalisation groups (so the remaining groups' statistics are unchanged);
LayerNorm prunes normalised axes and is marked inexact (its mean and variance change).
"""
from __future__ import annotations

import numpy as np
import torch.nn as nn
import torch.nn.functional as F

from ..conv_groups import GroupedConv, auto_units
from ..rule_context import Dim
from .table import ZERO_PRESERVING, OpFacts, register, register_module

_LAYER = OpFacts(zero_preserving=True, foldable_reader=True)  # input constants fold into the bias


def _conv(ctx, x, w, b, groups) -> None:
    out = ctx.out
    if x is None or w is None or out is None:
        return
    c = ctx.ndim(x) - (ctx.ndim(w) - 1)  # channel axis: 1 batched, 0 unbatched
    if c == 1:
        ctx.same(Dim(x, 0), Dim(out, 0))
    ctx.same(Dim(out, c), Dim(w, 0))
    ctx.source(Dim(w, 0))
    if b is not None:
        ctx.same(Dim(b, 0), Dim(out, c))
    cin, cout = ctx.shape(x)[c], ctx.shape(out)[c]
    if groups == 1:
        ctx.same(Dim(x, c), Dim(w, 1))
    elif cin // groups == 1:
        ctx.link(Dim(x, c), np.repeat(np.arange(groups), cout // groups), Dim(out, c), np.arange(cout))
    else:
        _grouped(ctx, Dim(x, c), Dim(w, 1), Dim(out, c), groups)
    ctx.macs([Dim(out, a) for a in range(ctx.ndim(out))] + [Dim(w, a) for a in range(1, ctx.ndim(w))])


def _grouped(ctx, x: Dim, w_in: Dim, out: Dim, groups: int) -> None:
    """Case 3 of the module docstring; records the conv on the builder (``ctx.grouped_convs``)."""
    cin, cout = ctx.shape(x.value)[x.axis], ctx.shape(out.value)[out.axis]
    a, b = cin // groups, cout // groups
    ci, co = np.arange(cin), np.arange(cout)
    units = auto_units(ctx.grouped, groups)
    ctx.grouped_convs[ctx.node.name] = GroupedConv(ctx.node.name, x, out, groups, a, b, units)
    if units == "groups":
        ctx.link(x, ci, out, ci // a * b)  # every input channel of group g with g's first output channel
        ctx.link(out, co, out, co // b * b)  # and every output channel of g with it
        ctx.touch(w_in)  # the per-group input width stays
        return
    ctx.link(x, ci, w_in, ci % a)
    ctx.link(out, co, out, co % b)


def _conv_new_groups(rctx, x, groups: int, weight_in: int) -> int:
    """A grouped conv's new group count: its new input channels over its (new) input channels per group.
    Depthwise-like convs and whole-group units lose groups; offsets in every group keep the count."""
    if groups > 1:
        c = rctx.ndim(x) - (rctx.weight_ndim - 1)
        return rctx.new_size(Dim(x, c)) // weight_in
    return groups


def _rewrite_conv_module(rctx) -> None:
    m = rctx.module
    x = rctx.value_of(rctx.node.args[0])
    rctx.weight_ndim = m.weight.ndim
    m.groups = _conv_new_groups(rctx, x, m.groups, m.weight.shape[1])
    m.out_channels = m.weight.shape[0]
    m.in_channels = m.weight.shape[1] * m.groups


@register_module(nn.Conv1d, nn.Conv2d, nn.Conv3d, rewrite=_rewrite_conv_module, facts=_LAYER)
def conv_module(ctx) -> None:
    _conv(ctx, ctx.value_of(ctx.arg(0, "input")), ctx.param("weight"), ctx.param("bias"), ctx.module.groups)


def _rewrite_conv_function(rctx) -> None:
    w = rctx.node.args[1] if len(rctx.node.args) > 1 else rctx.node.kwargs["weight"]
    groups = rctx.arg(6, "groups", 1)
    if groups == 1:
        return
    x = rctx.value_of(rctx.node.args[0])
    weight_shape = rctx.new_shape(rctx.value_of(w))
    rctx.weight_ndim = len(weight_shape)
    rctx.set_arg(6, "groups", _conv_new_groups(rctx, x, groups, weight_shape[1]))


@register(F.conv1d, F.conv2d, F.conv3d, rewrite=_rewrite_conv_function)
def conv_function(ctx) -> None:
    groups = ctx.arg(6, "groups", 1)
    if not isinstance(groups, int):
        return
    _conv(ctx, ctx.value_of(ctx.arg(0, "input")), ctx.value_of(ctx.arg(1, "weight")),
          ctx.value_of(ctx.arg(2, "bias")), groups)


def _rewrite_conv_transpose(rctx) -> None:
    m = rctx.module
    m.in_channels, m.out_channels = m.weight.shape[0], m.weight.shape[1]


@register_module(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, rewrite=_rewrite_conv_transpose,
                 facts=ZERO_PRESERVING)
def conv_transpose_module(ctx) -> None:
    m, x, out = ctx.module, ctx.value_of(ctx.arg(0, "input")), ctx.out
    if m.groups != 1 or x is None or out is None or ctx.ndim(x) != m.weight.ndim:
        return
    conv_transpose_couple(ctx, x, ctx.param("weight"), ctx.param("bias"), out)


def conv_transpose_couple(ctx, x: str, w: str, b: str | None, out: str) -> None:
    """Ungrouped transposed convolution, weight (in, out, ...): input channels are weight rows, output
    channels weight columns (the source)."""
    ctx.same(Dim(x, 0), Dim(out, 0))
    ctx.same(Dim(x, 1), Dim(w, 0))
    ctx.same(Dim(out, 1), Dim(w, 1))
    ctx.source(Dim(w, 1))
    if b is not None:
        ctx.same(Dim(b, 0), Dim(out, 1))
    ctx.macs([Dim(x, a) for a in range(ctx.ndim(x))] + [Dim(w, a) for a in range(1, ctx.ndim(w))])


def _linear(ctx, x, w, b) -> None:
    out = ctx.out
    if x is None or w is None or out is None:
        return
    nd = ctx.ndim(x)
    for a in range(nd - 1):
        ctx.same(Dim(x, a), Dim(out, a))
    ctx.same(Dim(x, nd - 1), Dim(w, 1))
    ctx.same(Dim(out, nd - 1), Dim(w, 0))
    ctx.source(Dim(w, 0))
    if b is not None:
        ctx.same(Dim(b, 0), Dim(out, nd - 1))
    ctx.macs([Dim(out, a) for a in range(nd)] + [Dim(w, 1)])


def _rewrite_linear(rctx) -> None:
    m = rctx.module
    m.out_features, m.in_features = m.weight.shape


@register_module(nn.Linear, rewrite=_rewrite_linear, facts=_LAYER)
def linear_module(ctx) -> None:
    _linear(ctx, ctx.value_of(ctx.arg(0, "input")), ctx.param("weight"), ctx.param("bias"))


@register(F.linear)
def linear_function(ctx) -> None:
    _linear(ctx, ctx.value_of(ctx.arg(0, "input")), ctx.value_of(ctx.arg(1, "weight")),
            ctx.value_of(ctx.arg(2, "bias")))


def _rewrite_embedding(rctx) -> None:
    rctx.module.embedding_dim = rctx.module.weight.shape[1]


@register_module(nn.Embedding, rewrite=_rewrite_embedding)
def embedding_module(ctx) -> None:
    x, out, w = ctx.value_of(ctx.arg(0, "input")), ctx.out, ctx.param("weight")
    if x is None or out is None:
        return
    for a in range(ctx.ndim(x)):
        ctx.same(Dim(x, a), Dim(out, a))
    ctx.same(Dim(out, ctx.ndim(out) - 1), Dim(w, 1))
    ctx.source(Dim(w, 1))


def _per_channel(ctx, x, axis: int, params: list[str | None]) -> None:
    """Shape-preserving op whose parameters are indexed by channel ``axis`` of ``x``."""
    if x is None or ctx.out is None:
        return
    ctx.same_all(x, ctx.out)
    for p in params:
        if p is not None:
            ctx.same(Dim(p, 0), Dim(x, axis))


def _per_channel_statistics(ctx, x, axis: int, params: list[str | None]) -> None:
    """A normalisation that may compute statistics over every axis but ``axis`` (batch statistics in
    training, instance norm, ``F.batch_norm(training=True)`` in weight standardisation): only the channel
    axis is coupled; the reduced axes stay untouched, hence frozen, since removing elements there would
    change the statistics of the elements that remain."""
    if x is None or ctx.out is None:
        return
    ctx.same(Dim(x, axis), Dim(ctx.out, axis))
    for p in params:
        if p is not None:
            ctx.same(Dim(p, 0), Dim(x, axis))


def _rewrite_num_features(rctx) -> None:
    m = rctx.module
    m.num_features = rctx.new_size(Dim(rctx.out, 1 if rctx.ndim(rctx.out) > 1 else 0))


@register_module(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, rewrite=_rewrite_num_features,
                 facts=ZERO_PRESERVING)  # NOTE: with the pruned γ, β and running mean zeroed
@register_module(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, rewrite=_rewrite_num_features)
def batchnorm_module(ctx) -> None:
    x = ctx.value_of(ctx.arg(0, "input"))
    if x is None:
        return
    axis = 1 if ctx.ndim(x) > 1 else 0
    names = ["weight", "bias", "running_mean", "running_var"]
    _per_channel_statistics(ctx, x, axis, [ctx.param(n) for n in names])


@register(F.batch_norm, F.instance_norm)
def batchnorm_function(ctx) -> None:
    x = ctx.value_of(ctx.arg(0, "input"))
    params = [ctx.value_of(a) for a in list(ctx.node.args[1:5]) + [ctx.node.kwargs.get(k) for k in
              ("running_mean", "running_var", "weight", "bias")]]
    if x is not None:
        _per_channel_statistics(ctx, x, 1 if ctx.ndim(x) > 1 else 0, params)


def _rewrite_prelu(rctx) -> None:
    rctx.module.num_parameters = rctx.module.weight.shape[0]


@register_module(nn.PReLU, rewrite=_rewrite_prelu, facts=ZERO_PRESERVING)
def prelu_module(ctx) -> None:
    x, w = ctx.value_of(ctx.arg(0, "input")), ctx.param("weight")
    if x is None:
        return
    many = ctx.shape(w)[0] > 1
    _per_channel(ctx, x, 1 if ctx.ndim(x) > 1 else 0, [w] if many else [])


def _layer_norm(ctx, x, n_norm: int, w, b) -> None:
    if x is None or ctx.out is None:
        return
    ctx.same_all(x, ctx.out)
    nd = ctx.ndim(x)
    for i in range(n_norm):
        d = Dim(x, nd - n_norm + i)
        ctx.inexact(d, "LayerNorm statistics are taken over the pruned axis")
        for p in (w, b):
            if p is not None:
                ctx.same(Dim(p, i), d)


def _rewrite_layer_norm_module(rctx) -> None:
    m, nd = rctx.module, rctx.ndim(rctx.out)
    k = len(m.normalized_shape)
    m.normalized_shape = tuple(rctx.new_size(Dim(rctx.out, nd - k + i)) for i in range(k))


@register_module(nn.LayerNorm, rewrite=_rewrite_layer_norm_module)
def layer_norm_module(ctx) -> None:
    m = ctx.module
    _layer_norm(ctx, ctx.value_of(ctx.arg(0, "input")), len(m.normalized_shape), ctx.param("weight"),
                ctx.param("bias"))


def _rewrite_layer_norm_function(rctx) -> None:
    shape = rctx.arg(1, "normalized_shape")
    nd = rctx.ndim(rctx.out)
    rctx.set_arg(1, "normalized_shape",
                 [rctx.new_size(Dim(rctx.out, nd - len(shape) + i)) for i in range(len(shape))])


@register(F.layer_norm, rewrite=_rewrite_layer_norm_function)
def layer_norm_function(ctx) -> None:
    shape = ctx.arg(1, "normalized_shape")
    if not isinstance(shape, (list, tuple)) or not all(isinstance(s, int) for s in shape):
        return
    _layer_norm(ctx, ctx.value_of(ctx.arg(0, "input")), len(shape), ctx.value_of(ctx.arg(2, "weight")),
                ctx.value_of(ctx.arg(3, "bias")))


def _group_norm(ctx, x, groups: int, w, b) -> None:
    if x is None or ctx.out is None:
        return
    _per_channel(ctx, x, 1, [w, b])
    c = ctx.shape(x)[1]
    ch = np.arange(c)
    ctx.link(Dim(x, 1), ch, Dim(x, 1), (ch // (c // groups)) * (c // groups))


def _rewrite_group_norm_module(rctx) -> None:
    m = rctx.module
    per_group = m.num_channels // m.num_groups
    m.num_channels = rctx.new_size(Dim(rctx.out, 1))
    m.num_groups = m.num_channels // per_group


@register_module(nn.GroupNorm, rewrite=_rewrite_group_norm_module)
def group_norm_module(ctx) -> None:
    m = ctx.module
    _group_norm(ctx, ctx.value_of(ctx.arg(0, "input")), m.num_groups, ctx.param("weight"), ctx.param("bias"))


def _rewrite_group_norm_function(rctx) -> None:
    groups = rctx.arg(1, "num_groups")
    old, new = rctx.old_size(Dim(rctx.out, 1)), rctx.new_size(Dim(rctx.out, 1))
    rctx.set_arg(1, "num_groups", new // (old // groups))


@register(F.group_norm, rewrite=_rewrite_group_norm_function)
def group_norm_function(ctx) -> None:
    groups = ctx.arg(1, "num_groups")
    if isinstance(groups, int):
        _group_norm(ctx, ctx.value_of(ctx.arg(0, "input")), groups, ctx.value_of(ctx.arg(2, "weight")),
                    ctx.value_of(ctx.arg(3, "bias")))

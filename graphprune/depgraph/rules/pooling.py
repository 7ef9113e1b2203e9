"""Spatial ops (pooling, resampling, padding) and reductions.

Spatial ops keep the leading (batch, channel) axes and freeze the spatial ones they change.
Reductions couple the axes they keep and freeze the axes they reduce: a mean over pruned channels
would change its divisor, so no reduced axis is ever pruned.  Softmax freezes its normalised axis.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..rule_context import Dim
from .table import ZERO_PRESERVING, register, register_method, register_module

_POOL_MODULES = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2,
                 nn.AvgPool3d: 3, nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
                 nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3,
                 nn.LPPool1d: 1, nn.LPPool2d: 2, nn.Upsample: None, nn.UpsamplingNearest2d: 2,
                 nn.UpsamplingBilinear2d: 2, nn.ZeroPad2d: 2, nn.ConstantPad1d: 1, nn.ConstantPad2d: 2,
                 nn.ConstantPad3d: 3, nn.ReflectionPad1d: 1, nn.ReflectionPad2d: 2, nn.ReplicationPad1d: 1,
                 nn.ReplicationPad2d: 2, nn.ReplicationPad3d: 3, nn.CircularPad2d: 2}
_POOL_FUNCTIONS = {F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3, F.avg_pool1d: 1, F.avg_pool2d: 2,
                   F.avg_pool3d: 3, F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2,
                   F.adaptive_avg_pool3d: 3, F.adaptive_max_pool1d: 1, F.adaptive_max_pool2d: 2,
                   F.adaptive_max_pool3d: 3, F.lp_pool2d: 2, F.interpolate: None, F.upsample: None}


def _keep_leading(ctx, x: str | None, n_spatial: int | None) -> None:
    out = ctx.out
    if x is None or out is None:
        return
    nd = ctx.ndim(x)
    lead = 2 if n_spatial is None else nd - n_spatial
    for a in range(min(lead, ctx.ndim(out))):
        ctx.same(Dim(x, a), Dim(out, a))


@register_module(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                 nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Upsample, nn.UpsamplingNearest2d,
                 nn.UpsamplingBilinear2d, facts=ZERO_PRESERVING)
@register_module(nn.LPPool1d, nn.LPPool2d, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
                 nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReplicationPad1d, nn.ReplicationPad2d,
                 nn.ReplicationPad3d, nn.CircularPad2d)
def pool_module(ctx) -> None:
    if getattr(ctx.module, "return_indices", False):
        return
    _keep_leading(ctx, ctx.value_of(ctx.arg(0, "input")), _POOL_MODULES[type(ctx.module)])


@register(F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.avg_pool2d, F.max_pool2d, F.interpolate,
          facts=ZERO_PRESERVING)
@register(F.max_pool1d, F.max_pool3d, F.avg_pool1d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool3d,
          F.adaptive_max_pool1d, F.adaptive_max_pool3d, F.lp_pool2d, F.upsample)
def pool_function(ctx) -> None:
    if ctx.arg(None, "return_indices", False) is True:
        return
    _keep_leading(ctx, ctx.value_of(ctx.arg(0, "input")), _POOL_FUNCTIONS[ctx.node.target])


@register(F.pad)
def pad(ctx) -> None:
    widths = ctx.arg(1, "pad")
    if isinstance(widths, (list, tuple)) and len(widths) % 2 == 0:
        _keep_leading(ctx, ctx.value_of(ctx.arg(0, "input")), len(widths) // 2)


def _reduced_axes(ctx, nd: int) -> set[int] | None:
    dim = ctx.arg(1, "dim")
    if dim is None:
        return set(range(nd))
    dims = dim if isinstance(dim, (list, tuple)) else [dim]
    return {d % nd for d in dims} if all(isinstance(d, int) for d in dims) else None


@register_method("mean", "sum", "amax", facts=ZERO_PRESERVING)
@register_method("amin", "std", "var", "logsumexp", "norm_reduce")
@register(torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var, torch.logsumexp)
def reduction(ctx) -> None:
    x, out = ctx.value_of(ctx.node.args[0]), ctx.out
    if x is None or out is None:
        return
    nd = ctx.ndim(x)
    reduced = _reduced_axes(ctx, nd)
    if reduced is None:
        return
    keepdim = bool(ctx.arg(2, "keepdim", False))
    j = 0
    for a in range(nd):
        if a in reduced:
            j += 1 if keepdim else 0
            continue
        ctx.same(Dim(x, a), Dim(out, j))
        j += 1


def _all_axes_but(ctx, x: str | None, dim) -> None:
    """Every axis of ``x`` but ``dim`` passes to the output unchanged; ``dim`` itself mixes elements (frozen)."""
    if x is None or ctx.out is None or not isinstance(dim, int):
        return
    nd = ctx.ndim(x)
    for a in range(nd):
        if a != dim % nd:
            ctx.same(Dim(x, a), Dim(ctx.out, a))


@register_method("softmax", "log_softmax")
@register(F.softmax, F.log_softmax, torch.softmax, torch.log_softmax)
def softmax(ctx) -> None:
    _all_axes_but(ctx, ctx.value_of(ctx.node.args[0]), ctx.arg(1, "dim"))


@register_module(nn.Softmax, nn.LogSoftmax)
def softmax_module(ctx) -> None:
    _all_axes_but(ctx, ctx.value_of(ctx.arg(0, "input")), ctx.module.dim)


@register_method("cumsum", facts=ZERO_PRESERVING)
@register(torch.cumsum, facts=ZERO_PRESERVING)
def cumsum(ctx) -> None:
    _all_axes_but(ctx, ctx.value_of(ctx.node.args[0]), ctx.arg(1, "dim"))


@register(torch.roll)
def roll(ctx) -> None:
    dims = ctx.arg(2, "dims")
    x = ctx.value_of(ctx.node.args[0])
    if x is None or ctx.out is None or dims is None:
        return
    dims = dims if isinstance(dims, (list, tuple)) else [dims]
    nd = ctx.ndim(x)
    rolled = {d % nd for d in dims if isinstance(d, int)}
    if len(rolled) != len(dims):
        return
    for a in range(nd):
        if a not in rolled:
            ctx.same(Dim(x, a), Dim(ctx.out, a))

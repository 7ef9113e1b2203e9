"""Rules for ATen ops: the op set of graphs captured by ``torch.export`` (``capture/export_capture.py``).

One row per overload (``aten.linear.default``, ``aten.view.default`` …), keyed exactly like the fx rows.
Where an ATen op takes its arguments in the order of its ``torch.nn.functional`` twin, the fx couple and
rewrite functions are reused unchanged; otherwise a small adapter reads the ATen layout:

1. layers: ``linear``/``conv*``/``layer_norm``/``group_norm`` as their functional forms; ``addmm`` (GPT-2's
   ``Conv1D``: ``bias + x @ W`` with ``W`` stored (in, out)); ``embedding(weight, indices)`` (weight first);
   ``batch_norm`` and ``_native_batch_norm_legit_no_training`` (tuple output: item 0 is the result);
2. shapes: ``view``/``reshape``/``_unsafe_view``/``expand`` with literal sizes the rewrite updates;
   ``permute``/``transpose``/``t``; ``slice.Tensor`` (an index map, bounds recomputed by the rewrite);
   ``select``; ``split``/``split_with_sizes``/``chunk`` (rewritten to ``split_with_sizes`` with the new
   sizes); ``unbind``, ``cat``, ``stack``, ``(un)squeeze``, ``(un)flatten``;
3. element-wise ops, reductions, softmax, products and ``scaled_dot_product_attention`` as in the fx rows;
4. size reads ``sym_size.int`` (dynamic shapes only): a size fed to a ``view``/``reshape``/``expand`` gives
   that output axis its planned size (``size_reads.py``: the rewrite makes it a literal where they differ);
   a size used as a *number* (arithmetic, a scale) would silently change meaning, so that dim is frozen,
   naming the user (static exports bake sizes as literals, which keep their original value);
5. ``_assert_tensor_metadata`` checks dtype/device/layout: it constrains no channel unless it pins sizes.

Items of tuple outputs are read by ``operator.getitem`` nodes, which use the fx row (``indexing.py``).
Every other ATen op has no row: the builder freezes its tensors with a reason (fail closed).
"""
from __future__ import annotations

import numpy as np
import torch

from ..rule_context import Dim
from .table import NO_FACTS, ZERO_PRESERVING, OpFacts, register
from .attention import _rewrite_sdpa, einsum, matmul, sdpa
from .elementwise import _ADDITIVE, _RESIDUAL_ADD, elementwise
from .layers import (_linear, _per_channel_statistics, _rewrite_conv_function, _rewrite_group_norm_function,
                     _rewrite_layer_norm_function, conv_function, conv_transpose_couple, group_norm_function,
                     layer_norm_function)
from .pooling import _keep_leading, reduction, softmax
from .shape import _rewrite_unflatten, cat, reshape_like, split_into, stack, unbind, unflatten

aten = torch.ops.aten

# ---- element-wise -------------------------------------------------------------------------------------
register(aten.add.Tensor, aten.add_.Tensor, facts=_RESIDUAL_ADD)(elementwise)
register(aten.sub.Tensor, aten.sub_.Tensor, facts=_ADDITIVE)(elementwise)
register(aten.mul.Tensor, aten.mul_.Tensor, aten.mul.Scalar, aten.relu.default, aten.relu_.default,
         aten.gelu.default, aten.gelu_.default, aten.silu.default, aten.silu_.default, aten.tanh.default,
         aten.relu6.default, aten.hardswish.default, aten.leaky_relu.default,
         aten.dropout.default, aten.contiguous.default, aten.alias.default, aten.neg.default,
         facts=ZERO_PRESERVING)(elementwise)
register(aten.add.Scalar, aten.sub.Scalar, aten.rsub.Scalar, aten.div.Tensor, aten.div.Scalar,
         aten.div_.Tensor, aten.add_.Scalar, aten.mul_.Scalar, aten.sigmoid.default, aten.hardtanh.default,
         aten.hardtanh_.default,  # NOTE: hardtanh(0) != 0 when min_val > 0
         aten.hardsigmoid.default, aten.exp.default, aten.log.default, aten.sqrt.default, aten.rsqrt.default,
         aten.pow.Tensor_Scalar, aten.pow.Tensor_Tensor, aten.erf.default, aten.abs.default, aten.sin.default,
         aten.cos.default, aten.clamp.default, aten.clamp_min.default, aten.square.default,
         aten.reciprocal.default, aten.elu.default, aten.mish.default, aten.clone.default, aten.detach.default,
         aten._to_copy.default, aten.to.dtype, aten.to.dtype_layout, aten.to.device, aten.type_as.default,
         aten.masked_fill.Scalar, aten.masked_fill.Tensor, aten.where.self, aten.maximum.default,
         aten.minimum.default, facts=NO_FACTS)(elementwise)

# in-place twins, as recorded by the record front end (``make_fx`` keeps them; export functionalises)
register(aten.hardswish_.default, aten.leaky_relu_.default, aten.tanh_.default, aten.mish_.default,
         facts=ZERO_PRESERVING)(elementwise)
register(aten.hardsigmoid_.default, aten.sigmoid_.default, aten.clamp_.default, aten.clamp_min_.default,
         aten.elu_.default, aten.exp_.default, aten.div_.Scalar, aten.sub_.Scalar, facts=NO_FACTS)(elementwise)


@register(aten._assert_tensor_metadata.default)
def assert_metadata(ctx) -> None:
    """A dtype/device/layout check constrains no channel; one that pins sizes or strides freezes them."""
    x = ctx.value_of(ctx.arg(0, "a"))
    if x is not None and ctx.arg(1, "size") is None and ctx.arg(2, "stride") is None:
        ctx.touch(*ctx.dims(x))


# ---- layers -------------------------------------------------------------------------------------------
register(aten.conv1d.default, aten.conv2d.default, aten.conv3d.default, aten.conv2d.padding,
         rewrite=_rewrite_conv_function, facts=ZERO_PRESERVING)(conv_function)
register(aten.layer_norm.default, rewrite=_rewrite_layer_norm_function)(layer_norm_function)
register(aten.group_norm.default, rewrite=_rewrite_group_norm_function)(group_norm_function)


@register(aten.linear.default, facts=ZERO_PRESERVING)
def linear(ctx) -> None:
    _linear(ctx, ctx.value_of(ctx.arg(0, "input")), ctx.value_of(ctx.arg(1, "weight")),
            ctx.value_of(ctx.arg(2, "bias")))


@register(aten.addmm.default)
def addmm(ctx) -> None:
    """``out = bias + x @ w`` with ``x`` (M, K), ``w`` (K, N): w's columns are the output features."""
    bias, x, w = (ctx.value_of(ctx.arg(i, n)) for i, n in enumerate(("self", "mat1", "mat2")))
    out = ctx.out
    if None in (x, w, out) or ctx.arg(3, "beta", 1) != 1 or ctx.arg(4, "alpha", 1) != 1:
        return
    ctx.same(Dim(x, 0), Dim(out, 0))
    ctx.same(Dim(x, 1), Dim(w, 0))
    ctx.same(Dim(w, 1), Dim(out, 1))
    ctx.source(Dim(w, 1))
    if bias is not None:
        ctx.broadcast(out, [bias])
    ctx.macs([Dim(out, 0), Dim(out, 1), Dim(x, 1)])


@register(aten.embedding.default)
def embedding(ctx) -> None:
    """``embedding(weight, indices)``: output = indices' axes + the embedding axis (weight axis 1)."""
    w, idx, out = ctx.value_of(ctx.arg(0, "weight")), ctx.value_of(ctx.arg(1, "indices")), ctx.out
    if w is None or idx is None or out is None:
        return
    for a in range(ctx.ndim(idx)):
        ctx.same(Dim(idx, a), Dim(out, a))
    ctx.same(Dim(out, ctx.ndim(out) - 1), Dim(w, 1))
    ctx.source(Dim(w, 1))


@register(aten.batch_norm.default, facts=ZERO_PRESERVING)  # NOTE: with pruned γ, β, running mean zeroed
def batch_norm(ctx) -> None:
    """``batch_norm(input, weight, bias, running_mean, running_var, training, …)``."""
    x = ctx.value_of(ctx.arg(0, "input"))
    if x is not None:
        params = [ctx.value_of(ctx.arg(i)) for i in range(1, 5)]
        _per_channel_statistics(ctx, x, 1 if ctx.ndim(x) > 1 else 0, params)


@register(aten.instance_norm.default)
def instance_norm(ctx) -> None:
    """``instance_norm(input, weight, bias, running_mean, running_var, …)``: statistics per sample."""
    batch_norm(ctx)


@register(aten.conv_transpose1d.default, aten.conv_transpose2d.input, aten.conv_transpose3d.input,
          facts=ZERO_PRESERVING)
def conv_transpose(ctx) -> None:
    """``conv_transpose(input, weight, bias, stride, padding, output_padding, groups, …)``, weight (in, out, …).

    Only ``groups == 1``: the functional form has no attribute for the rewrite to fix, and grouped
    transposed convolutions are rare enough to stay frozen."""
    x, w, b = (ctx.value_of(ctx.arg(i, n)) for i, n in enumerate(("input", "weight", "bias")))
    out = ctx.out
    if None in (x, w, out) or ctx.arg(6, "groups", 1) != 1 or ctx.ndim(x) != ctx.ndim(w):
        return
    conv_transpose_couple(ctx, x, w, b, out)


@register(aten.prelu.default, facts=ZERO_PRESERVING)
def prelu(ctx) -> None:
    """``prelu(x, weight)``: one slope per channel (axis 1), or one shared slope."""
    x, w = ctx.value_of(ctx.arg(0, "self")), ctx.value_of(ctx.arg(1, "weight"))
    if x is None or w is None or ctx.out is None:
        return
    ctx.same_all(x, ctx.out)
    if ctx.shape(w)[0] > 1:
        ctx.same(Dim(w, 0), Dim(x, 1 if ctx.ndim(x) > 1 else 0))
    else:
        ctx.touch(Dim(w, 0))


@register(aten._native_batch_norm_legit_no_training.default)
def batch_norm_no_training(ctx) -> None:
    """Returns (out, save_mean, save_invstd); only ``out`` (item 0) carries channels."""
    x, items = ctx.value_of(ctx.arg(0, "input")), ctx.tuple_values(ctx.node)
    first = f"{ctx.node.name}#0"
    if x is None or first not in items:
        return
    ctx.same_all(x, first)
    for p in (ctx.value_of(ctx.arg(i)) for i in range(1, 5)):
        if p is not None:
            ctx.same(Dim(p, 0), Dim(x, 1 if ctx.ndim(x) > 1 else 0))
    for item in items[1:]:
        ctx.touch(*ctx.dims(item))  # empty statistics tensors in inference


# ---- shapes ---------------------------------------------------------------------------------------------
def _size_read(ctx, entry) -> Dim | None:
    """The dim a size entry was read from (``aten.sym_size.int(x, i)``), else None."""
    if getattr(entry, "op", None) == "call_function" and entry.target is aten.sym_size.int:
        x = ctx.value_of(entry.args[0])
        if x is not None:
            return Dim(x, entry.args[1] % ctx.ndim(x))
    return None


def _couple_sizes(ctx, out: str, entries) -> None:
    """A size read giving an output axis the rule left alone: both shrink together (``shape.couple_size_args``)."""
    for j, e in enumerate(entries if isinstance(entries, (list, tuple)) else ()):
        src = _size_read(ctx, e)
        if src is not None and j < ctx.ndim(out) and Dim(out, j) not in ctx.touched \
                and ctx.shape(src.value)[src.axis] == ctx.shape(out)[j]:
            ctx.same(Dim(out, j), src)


def _rewrite_sizes(rctx, index: int, name: str) -> None:
    """Literal sizes (not -1, not size reads) of a size-list argument become the planned new sizes."""
    sizes = rctx.arg(index, name)
    new = [rctx.new_size(Dim(rctx.out, j)) if isinstance(s, int) and s != -1 else s for j, s in enumerate(sizes)]
    rctx.set_arg(index, name, list(new))


def _rewrite_view(rctx) -> None:
    _rewrite_sizes(rctx, 1, "size")


@register(aten.view.default, aten.reshape.default, aten._unsafe_view.default, rewrite=_rewrite_view,
          facts=ZERO_PRESERVING)
def view(ctx) -> None:
    reshape_like(ctx, ctx.value_of(ctx.arg(0, "self")), ctx.out)


@register(aten.expand.default, rewrite=_rewrite_view, facts=ZERO_PRESERVING)
def expand(ctx) -> None:
    x, out = ctx.value_of(ctx.arg(0, "self")), ctx.out
    if x is not None and out is not None:
        ctx.broadcast(out, [x])
        _couple_sizes(ctx, out, ctx.arg(1, "size"))
        ctx.touch_copies(out, x)  # copies may be pruned (MQA/GQA query heads within a kv group)


@register(aten.flatten.using_ints, aten.unsqueeze.default, aten.squeeze.default, aten.squeeze.dim,
          aten.squeeze.dims, facts=ZERO_PRESERVING)
def flatten(ctx) -> None:
    reshape_like(ctx, ctx.value_of(ctx.arg(0, "self")), ctx.out)


register(aten.unflatten.int, rewrite=_rewrite_unflatten)(unflatten)


def _permutation(ctx, nd: int) -> list[int] | None:
    target = ctx.node.target
    if target is aten.permute.default:
        dims = ctx.arg(1, "dims")
        return [d % nd for d in dims] if all(isinstance(d, int) for d in dims) else None
    if target in (aten.transpose.int, aten.swapaxes.default):
        d0, d1 = ctx.arg(1, "dim0"), ctx.arg(2, "dim1")
        perm = list(range(nd))
        perm[d0 % nd], perm[d1 % nd] = perm[d1 % nd], perm[d0 % nd]
        return perm
    return list(range(nd))[::-1]  # aten.t


@register(aten.permute.default, aten.transpose.int, aten.swapaxes.default, aten.t.default, facts=ZERO_PRESERVING)
def permute(ctx) -> None:
    x, out = ctx.value_of(ctx.arg(0, "self")), ctx.out
    perm = _permutation(ctx, ctx.ndim(x)) if x is not None and out is not None else None
    for o, i in enumerate(perm or ()):
        ctx.same(Dim(x, i), Dim(out, o))


def _slice_bounds(ctx_or_rctx, size: int) -> tuple[int, int, int]:
    start, end, step = (ctx_or_rctx.arg(i, n) for i, n in ((2, "start"), (3, "end"), (4, "step")))
    return slice(start, end, 1 if step is None else step).indices(size)


def _rewrite_slice(rctx) -> None:
    x = rctx.value_of(rctx.arg(0, "self"))
    dim = rctx.arg(1, "dim", 0) % rctx.ndim(x)
    start, stop, _ = _slice_bounds(rctx, rctx.old_shape(x)[dim])
    kept = rctx.kept(Dim(x, dim))
    rctx.set_arg(2, "start", int(np.searchsorted(kept, start)))
    rctx.set_arg(3, "end", int(np.searchsorted(kept, max(stop, start))))


@register(aten.slice.Tensor, rewrite=_rewrite_slice, facts=ZERO_PRESERVING)
def slice_tensor(ctx) -> None:
    """A step-1 slice is an index map: kept element k of the output is input element ``start + k``."""
    x, out = ctx.value_of(ctx.arg(0, "self")), ctx.out
    dim = ctx.arg(1, "dim", 0)
    if x is None or out is None or not isinstance(dim, int):
        return
    dim %= ctx.ndim(x)
    start, stop, step = _slice_bounds(ctx, ctx.shape(x)[dim])
    for a in range(ctx.ndim(x)):
        if a != dim:
            ctx.same(Dim(x, a), Dim(out, a))
    if step == 1:
        stop = max(stop, start)
        ctx.link(Dim(x, dim), np.arange(start, stop), Dim(out, dim), np.arange(stop - start))
        ctx.touch(Dim(x, dim))


@register(aten.select.int, facts=ZERO_PRESERVING)
def select(ctx) -> None:
    """Picks one index of ``dim`` (left frozen); the other axes pass through."""
    x, out, dim = ctx.value_of(ctx.arg(0, "self")), ctx.out, ctx.arg(1, "dim")
    if x is None or out is None or not isinstance(dim, int):
        return
    dim %= ctx.ndim(x)
    for a in range(ctx.ndim(x)):
        if a != dim:
            ctx.same(Dim(x, a), Dim(out, a if a < dim else a - 1))


def _rewrite_split(rctx) -> None:
    x = rctx.arg(0, "self")
    dim = rctx.arg(2, "dim", 0) % rctx.ndim(rctx.value_of(x))
    sizes = [rctx.new_size(Dim(item, dim)) for item in rctx.outs]
    rctx.replace_call(aten.split_with_sizes.default, (x, sizes, dim))


@register(aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default, rewrite=_rewrite_split,
          facts=ZERO_PRESERVING)
def split(ctx) -> None:
    """Consecutive pieces of ``dim``: item k's element j is input element ``offset_k + j``."""
    split_into(ctx, ctx.value_of(ctx.arg(0, "self")), ctx.outs, ctx.arg(2, "dim", 0))


register(aten.unbind.int)(unbind)
register(aten.cat.default, facts=OpFacts(zero_preserving=True, combine="concat"))(cat)
register(aten.stack.default)(stack)


_SIZE_CONSUMERS = (aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.expand.default)


@register(aten.sym_size.int)
def sym_size(ctx) -> None:
    """A width read: coupled where a reshape uses it as a size; used as a number, its dim is frozen."""
    x, dim = ctx.value_of(ctx.arg(0, "self")), ctx.arg(1, "dim")
    if x is None or not isinstance(dim, int):
        return
    dim %= ctx.ndim(x)
    ctx.touch(*ctx.dims(x))
    for user in ctx.node.users:
        sizes = user.args[1] if user.op == "call_function" and user.target in _SIZE_CONSUMERS else ()
        if not (isinstance(sizes, (list, tuple)) and ctx.node in sizes):
            ctx.freeze(Dim(x, dim), f"its size is used as a number by '{user.name}' ({user.target}); pruning "
                                    "would change that value")
            return


# ---- reductions, products, attention, pooling -----------------------------------------------------------
register(aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, facts=ZERO_PRESERVING)(reduction)
register(aten.mean.default, aten.sum.default)(reduction)
register(aten.softmax.int, aten._softmax.default, aten.log_softmax.int)(softmax)
register(aten.matmul.default, aten.bmm.default, aten.mm.default)(matmul)
register(aten.einsum.default)(einsum)
register(aten.scaled_dot_product_attention.default, rewrite=_rewrite_sdpa)(sdpa)

_POOLS = {aten.max_pool1d.default: 1, aten.max_pool2d.default: 2, aten.max_pool3d.default: 3,
          aten.avg_pool1d.default: 1, aten.avg_pool2d.default: 2, aten.avg_pool3d.default: 3,
          aten.adaptive_avg_pool1d.default: 1, aten.adaptive_avg_pool2d.default: 2,
          aten.adaptive_avg_pool3d.default: 3}


@register(*_POOLS, facts=ZERO_PRESERVING)
def pool(ctx) -> None:
    _keep_leading(ctx, ctx.value_of(ctx.arg(0, "self")), _POOLS[ctx.node.target])


@register(aten.upsample_nearest2d.vec, aten.upsample_bilinear2d.vec, aten.upsample_nearest1d.vec,
          aten.upsample_linear1d.vec, aten.upsample_nearest3d.vec, aten.upsample_trilinear3d.vec,
          aten.upsample_bicubic2d.vec, facts=ZERO_PRESERVING)
def upsample(ctx) -> None:
    _keep_leading(ctx, ctx.value_of(ctx.arg(0, "input")), None)


@register(aten.constant_pad_nd.default, aten.pad.default)
def constant_pad(ctx) -> None:
    """``pad(self, pad, …)``: ``pad`` lists (before, after) pairs from the last axis backwards; an axis padded by
    (0, 0) keeps its channels, as do the leading axes (e.g. the channels-last width Swin pads past)."""
    widths, x, out = ctx.arg(1, "pad"), ctx.value_of(ctx.arg(0, "self")), ctx.out
    if not isinstance(widths, (list, tuple)) or len(widths) % 2 or x is None or out is None:
        return
    nd = ctx.ndim(x)
    _keep_leading(ctx, x, len(widths) // 2)
    for i in range(len(widths) // 2):
        if widths[2 * i] == 0 and widths[2 * i + 1] == 0 and nd - 1 - i >= 0:
            ctx.same(Dim(x, nd - 1 - i), Dim(out, nd - 1 - i))


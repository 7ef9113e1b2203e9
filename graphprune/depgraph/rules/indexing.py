"""Indexing: ``x[...]`` with ints, step-1 slices, None and Ellipsis; selecting items of tuple outputs.

A step-1 slice on a channel axis is an index map (kept channel k of the slice is input channel
``start + k``); channels outside the slice may be pruned freely, and the rewrite recomputes the bounds
from the kept indices.  Int indices freeze their axis; advanced indexing freezes everything it touches.
"""
from __future__ import annotations

import operator

import numpy as np
import torch.fx as fx

from ..rule_context import Dim
from .table import ZERO_PRESERVING, register


def index_plan(index, shape: tuple[int, ...]) -> list[tuple] | None:
    """Walk a basic index; return entries (kind, in_axis, out_axis, start, stop, entry) or None.

    kinds: "same" (full slice or untouched axis), "range" (step-1 slice), "drop" (int index),
    "new" (None), "opaque" (a step-1 slice with bounds computed at run time, e.g. RoPE's
    ``x[..., : x.shape[-1] // 2]``: that axis is frozen, the others pass); ``entry`` is the position in
    the index tuple (None for implied axes).
    Advanced indexing (tensors, lists, proxies) and strided slices return None.
    """
    entries = list(index) if isinstance(index, tuple) else [index]
    consuming = sum(1 for e in entries if e is not None and e is not Ellipsis)
    if consuming > len(shape) or sum(e is Ellipsis for e in entries) > 1:
        return None
    plan, i, j = [], 0, 0
    for p, e in enumerate(entries):
        if e is Ellipsis:
            for _ in range(len(shape) - consuming):
                plan.append(("same", i, j, 0, shape[i], None)); i += 1; j += 1
        elif e is None:
            plan.append(("new", None, j, 0, 1, p)); j += 1
        elif isinstance(e, int) and not isinstance(e, bool):
            plan.append(("drop", i, None, e % shape[i], e % shape[i] + 1, p)); i += 1
        elif isinstance(e, slice) and e.step in (None, 1) and any(isinstance(v, fx.Node) for v in (e.start, e.stop)):
            plan.append(("opaque", i, j, 0, shape[i], p)); i += 1; j += 1  # bounds computed at run time
        elif isinstance(e, slice) and all(v is None or isinstance(v, int) for v in (e.start, e.stop, e.step)):
            start, stop, step = e.indices(shape[i])
            if step != 1:
                return None
            stop = max(stop, start)
            kind = "same" if (start, stop) == (0, shape[i]) else "range"
            plan.append((kind, i, j, start, stop, p)); i += 1; j += 1
        else:
            return None
    while i < len(shape):
        plan.append(("same", i, j, 0, shape[i], None)); i += 1; j += 1
    return plan


def _rewrite_getitem(rctx) -> None:
    x = rctx.value_of(rctx.node.args[0])
    if x is None:
        return
    index = rctx.node.args[1]
    entries = list(index) if isinstance(index, tuple) else [index]
    for kind, i, _, start, stop, p in index_plan(index, rctx.old_shape(x)) or []:
        if kind == "range":
            kept = rctx.kept(Dim(x, i))
            entries[p] = slice(int(np.searchsorted(kept, start)), int(np.searchsorted(kept, stop)), None)
    rctx.node.args = (rctx.node.args[0], tuple(entries) if isinstance(index, tuple) else entries[0])


@register(operator.getitem, rewrite=_rewrite_getitem, facts=ZERO_PRESERVING)
def getitem(ctx) -> None:
    src, index, out = ctx.node.args[0], ctx.node.args[1], ctx.out
    items = ctx.tuple_values(src)
    if items:  # selecting one output of a tuple-returning node; other items are not ours to freeze
        n_items = len(ctx.tuple_outputs(src))
        if not isinstance(index, int) or not -n_items <= index < n_items:
            return
        item = f"{src.name}#{index % n_items}"
        ctx.skip.update(v for v in items if v != item)
        if out is not None and item in items:
            ctx.same_all(item, out)
        return
    x = ctx.value_of(src)
    if x is None or out is None:
        return
    plan = index_plan(index, ctx.shape(x))
    if plan is None:
        return
    for kind, i, j, start, stop, _ in plan:
        if kind == "same":
            ctx.same(Dim(x, i), Dim(out, j))
        elif kind == "range":
            ctx.link(Dim(x, i), np.arange(start, stop), Dim(out, j), np.arange(stop - start))
            ctx.touch(Dim(x, i))
        elif kind == "opaque":
            why = "slice bounds computed at run time (from sizes): this axis keeps every element"
            ctx.freeze(Dim(x, i), why)
            ctx.freeze(Dim(out, j), why)



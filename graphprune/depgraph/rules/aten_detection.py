"""ATen rows for what detectors run (the record front end, ``capture/record_capture.py``): tensors made from literal
sizes, ``index_put``, and torchvision's ``roi_align`` (Faster / Mask / Keypoint R-CNN's box and mask features).
Kept apart from ``aten.py`` (the Core ATen set of ``torch.export`` graphs) because they only matter once a run
was recorded.
"""
from __future__ import annotations

import torch

from ..rule_context import Dim
from .aten import _rewrite_sizes
from .table import ZERO_PRESERVING, register

aten = torch.ops.aten


def _rewrite_creation(rctx) -> None:
    _rewrite_sizes(rctx, 0, "size")


@register(aten.zeros.default, aten.ones.default, aten.empty.memory_format, rewrite=_rewrite_creation)
def creation(ctx) -> None:
    """A tensor made from literal sizes (``torch.zeros((n, c, 7, 7))``): its axes follow whatever it meets;
    the rewrite writes the planned sizes into the literal."""
    if ctx.out is not None:
        ctx.touch(*ctx.dims(ctx.out))


@register(aten.index_put_.default, aten.index_put.default)
def index_put(ctx) -> None:
    """``self[indices] = values`` with ``indices`` on the leading axes: trailing axes of ``values`` are
    ``self``'s; the indexed axes and the indices stay frozen."""
    x, indices, values, out = ctx.value_of(ctx.arg(0, "self")), ctx.arg(1, "indices"), \
        ctx.value_of(ctx.arg(2, "values")), ctx.out
    if None in (x, values, out) or not isinstance(indices, (list, tuple)) or None in indices:
        return
    ctx.same_all(x, out)
    lead = len(indices)
    if ctx.ndim(values) == ctx.ndim(x) and lead < ctx.ndim(x):
        for a in range(lead, ctx.ndim(x)):
            ctx.same(Dim(values, a), Dim(x, a))


def roi_align(ctx) -> None:
    """torchvision ``roi_align(input (N, C, H, W), rois (K, 5), …) -> (K, C, ph, pw)``: channels pass through."""
    x, out = ctx.value_of(ctx.arg(0, "input")), ctx.out
    if x is not None and out is not None:
        ctx.same(Dim(x, 1), Dim(out, 1))


try:  # two-stage detectors pool box features with RoIAlign; the op exists once torchvision is imported
    import torchvision  # noqa: F401

    register(torch.ops.torchvision.roi_align.default, facts=ZERO_PRESERVING)(roi_align)
except (ImportError, AttributeError, RuntimeError):  # pragma: no cover - torchvision is a dependency
    pass

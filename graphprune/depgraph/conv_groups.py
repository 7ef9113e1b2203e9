"""Grouped-convolution units: what one prunable unit of a grouped conv (``1 < groups < in_channels``) is.

A grouped conv with ``G`` groups splits its ``C_in = G * a`` input and ``C_out = G * b`` output channels into
``G`` independent convs: output channel ``o`` (group ``o // b``) reads input channels ``(o // b) * a ...
(o // b + 1) * a - 1`` through weight columns ``0 ... a - 1``.  Which coordinate carries the unit is a choice
(``prune(..., grouped=...)``):

* ``"groups"`` — a unit is one whole group: its ``a`` input channels and ``b`` output channels (with whatever
  is coupled to them: the 1x1 conv before it, BN, SE gating, the 1x1 conv after it).  ``G`` shrinks, the group
  width ``a`` and ``b`` stay, so the per-group kernel keeps the shape it had (RegNet's 16/24/48/56, ResNeXt's
  4..32 channels per group).  The weight's second axis (``a``) is never pruned.
* ``"group_width"`` — a unit is one offset ``k`` in every group, on the input and output separately (``G``
  channels per unit): ``G`` stays, the group width shrinks.  The finer choice: ``G`` units of ``a`` channels
  become ``a`` units of ``G`` channels.
* ``"auto"`` (default) — per conv: ``"groups"`` when it has at least ``AUTO_MIN_GROUPS`` groups, else
  ``"group_width"`` (``auto_units``).  Measured (ONNX Runtime CPU fp32, 1 thread, batch 1, 0.5 MACs, timed
  interleaved on a loaded 2-core VM): ResNeXt-50 32x4d 1.87x with whole groups vs 1.72x with offsets,
  RegNetY-800MF 1.58-1.72x vs 1.55-1.65x; with exact widths (``round_to=1``) RegNetY-800MF 1.47x vs 0.98x (odd
  group widths are slow kernels).  With 2 or 3 groups one unit is half or a third of the layer, too coarse a
  step for the budget search (as for attention with few heads), so offsets are used there.

Depthwise-like convs (one input channel per group, MobileNet, EfficientNet) are whole groups either way: one
input channel and its ``b`` output channels are one unit (``rules/layers.py``).

The rewrite sets ``groups = new C_in / (new weight.shape[1])`` for every grouped conv (``rules/layers.py``),
which holds in both modes.

Width menus: with whole groups one unit is ``b`` channels of the producing layer, so the menus of
``round_to="auto"`` (multiples of 16 *channels*, ``search/menus.py``) step by ``16 / gcd(16, b)`` units there
(``unit_channels``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rule_context import Dim

__all__ = ["GROUPED_UNITS", "AUTO_MIN_GROUPS", "GroupedConv", "check_grouped", "auto_units", "unit_channels",
           "groups_kept", "describe_groups"]

GROUPED_UNITS = ("auto", "groups", "group_width")
AUTO_MIN_GROUPS = 4


@dataclass(frozen=True)
class GroupedConv:
    """One grouped conv (``1 < groups < in_channels``) as the builder saw it.

    Attributes:
        node: the conv node's name.  inputs / output: its input value's and output value's channel dims.
        groups: ``G``.  group_in / group_out: channels per group on the input (``a``) and output (``b``).
        units: what one unit is there, ``"groups"`` or ``"group_width"``.
    """

    node: str
    inputs: Dim
    output: Dim
    groups: int
    group_in: int
    group_out: int
    units: str


def check_grouped(value) -> str:
    """``value`` if it names a grouped-conv unit kind, else a ValueError naming the choices."""
    if not isinstance(value, str) or value not in GROUPED_UNITS:
        raise ValueError(f"grouped must be one of {list(GROUPED_UNITS)} (what one prunable unit of a grouped "
                         f"convolution is: a whole group, one offset in every group, or auto); got {value!r:.60}")
    return value


def auto_units(grouped: str, groups: int) -> str:
    """The units of one conv with ``groups`` groups: ``grouped``, with ``"auto"`` resolved (module docstring)."""
    if grouped != "auto":
        return grouped
    return "groups" if groups >= AUTO_MIN_GROUPS else "group_width"


def unit_channels(graph) -> np.ndarray:
    """Per group of ``graph``: channels one unit is in the producing layer (``b`` for a whole-group conv's
    output channels, else 1), for the channel-multiple width menus."""
    by_class = {}
    for conv in graph.grouped_convs.values():
        if conv.units == "groups" and conv.output in graph.dim_class:
            by_class[graph.dim_class[conv.output]] = conv.group_out
    out = np.ones(len(graph.groups), dtype=np.int64)
    for gi, g in enumerate(graph.groups):
        widths = [by_class[c] for c in g.classes if c in by_class]
        if widths:
            out[gi] = max(widths)
    return out


def groups_kept(graph, keep: np.ndarray) -> list[tuple[str, int, int, int, int]]:
    """Per grouped conv: (node, groups kept, groups, input width per group kept, input width per group)."""
    rows = []
    for conv in graph.grouped_convs.values():
        cin = graph.dim_size(conv.inputs, keep)
        if conv.units == "groups":
            g, a = cin // conv.group_in, conv.group_in
        else:
            g, a = conv.groups, cin // conv.groups
        rows.append((conv.node, g, conv.groups, a, conv.group_in))
    return rows


def describe_groups(graph, keep: np.ndarray) -> str:
    """One line: ``grouped conv units groups; groups kept: 4/4 7/9 ...`` (``xa/A`` where the group width shrank)."""
    rows = groups_kept(graph, keep)
    if not rows:
        return ""
    parts = [f"{g}/{gg}" + (f"x{a}/{aa}" if a != aa else "") for _, g, gg, a, aa in rows]
    units = sorted({conv.units for conv in graph.grouped_convs.values()})
    return f"grouped conv units {' and '.join(units)}; groups kept: " + " ".join(parts)

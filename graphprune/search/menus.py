"""Width menus: the kept-unit counts allocation may choose per group.

* ``round_to=k`` (an int): multiples of k, and the full width;
* ``round_to="auto"`` with a latency model: ``width_menu(g)``, the widest width of each latency step (so
  no group sits just past a jump in time); on runtimes with a channel-blocked layout (``BLOCKED_LAYOUT_RUNTIMES``)
  :func:`coarse_menu` first and the step ends only where the budget needs finer widths (see the note there);
* ``round_to="auto"`` without one, two tiers: first :func:`coarse_menu`, multiples of 16 with groups under 16
  units kept whole — measured on ONNX Runtime and OpenVINO CPU kernels, 16-channel multiples ran fastest
  (``round_to=16`` at 0.5 MACs: RegNetY-800MF 1.66x vs 1.03x with 8/4 menus, MobileNetV2 1.77x vs 1.52x,
  EfficientNet-B0 1.81x vs 1.54x), and pruning small (often grouped) layers to odd widths cost more time than it
  saved; when the budget cannot be met that way, :func:`heuristic_menu` (multiples of 8 for groups of 32+
  units, of 4 for 8+, every width below).

A unit may be several channels of its producing layer (a whole group of a grouped conv,
``depgraph/conv_groups.py``): ``unit_channels`` gives that number per group and both heuristic menus count
channels, so a group of 16-channel units steps by one unit.

Rounding maps a count up to the next menu entry (floors too); the greedy fill steps to the next entry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["WidthMenus", "width_menus", "heuristic_menu", "heuristic_step", "coarse_menu", "HEURISTIC_POLICY",
           "COARSE_POLICY", "BLOCKED_LAYOUT_RUNTIMES", "LAYOUT_BLOCK"]

# NOTE: ONNX Runtime (NCHWc) and OpenVINO CPU run convs in a channel-blocked layout (16 channels on AVX-512)
# and convert at every layer whose channels are not a multiple of the block.  Standalone pieces pay that
# conversion either way, so the measured table cannot see it; whole models can: RegNetY-800MF at 0.5 MACs
# on ORT, 1 thread ran 0.86x of dense with the table's step ends vs 1.65x with multiples of 16.
BLOCKED_LAYOUT_RUNTIMES = ("ort-cpu", "openvino-cpu")
LAYOUT_BLOCK = 16

HEURISTIC_POLICY = "heuristic: multiples of 8 (groups >= 32 units), of 4 (>= 8), exact below"
COARSE_POLICY = ("heuristic: multiples of 16, groups under 16 units kept whole (multiples of 8 / 4 where the budget "
                 "needs finer widths)")


def coarse_menu(n: int, unit: int = 1) -> np.ndarray:
    """Counts that are multiples of 16 channels (``unit`` channels per unit), and ``n`` itself; a group under
    that step keeps all of its units."""
    step = LAYOUT_BLOCK // math.gcd(LAYOUT_BLOCK, int(unit))
    return np.unique(np.append(np.arange(step, n + 1, step), n)).astype(np.int64)


def heuristic_step(n: int) -> int:
    """The width step without a measurement: 8 for groups of at least 32 units, 4 for at least 8, else 1."""
    return 8 if n >= 32 else 4 if n >= 8 else 1


def heuristic_menu(n: int, unit: int = 1) -> np.ndarray:
    """Multiples of 8 for ``n >= 32``, of 4 for ``n >= 8``, every count below (counted in channels when a unit
    is ``unit`` channels); ``n`` itself always."""
    step = max(1, heuristic_step(n * int(unit)) // int(unit))
    return np.unique(np.append(np.arange(step, n + 1, step), n)).astype(np.int64)


@dataclass
class WidthMenus:
    """Per-group menus: either every multiple of ``step`` (arrays None) or explicit ascending arrays.

    Attributes:
        n: group sizes.  step: the multiple when the menus are arithmetic.
        menus: explicit per-group menus (each ends at ``n_g``), or None.
        policy: a line for the report saying which menus were used.
        fallback: finer menus to use when the budget cannot be met with these.
    """

    n: np.ndarray
    step: int = 1
    menus: list[np.ndarray] | None = None
    policy: str = "exact widths"
    fallback: "WidthMenus | None" = None

    def __post_init__(self) -> None:
        if self.menus is None:
            return
        # NOTE: padded with n_g so one vectorised comparison rounds every group (bisection calls this often)
        width = max((len(m) for m in self.menus), default=1)
        self._table = np.array([np.pad(m, (0, width - len(m)), constant_values=m[-1]) for m in self.menus],
                               dtype=np.int64).reshape(len(self.menus), width)

    def ceil(self, counts: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Each count clipped to ``[lo_g, n_g]`` and rounded up to its group's next menu entry."""
        counts = np.clip(np.asarray(counts, dtype=np.int64), lo, self.n)
        if self.menus is None:
            if self.step <= 1:
                return counts
            return np.minimum(self.n, np.ceil(counts / self.step).astype(np.int64) * self.step)
        if not len(counts):
            return counts
        idx = (self._table < counts[:, None]).sum(axis=1)
        return self._table[np.arange(len(counts)), idx]

    def next_up(self, gi: int, count: int) -> int:
        """The next menu entry above ``count`` in group ``gi`` (``n_g`` at most)."""
        if self.menus is None:
            return int(min(self.n[gi], count + max(self.step, 1)))
        menu = self.menus[gi]
        return int(menu[min(np.searchsorted(menu, count, side="right"), len(menu) - 1)])

    def allowed(self, gi: int, lo: int) -> np.ndarray:
        """Every width group ``gi`` may keep at or above its floor ``lo`` (ascending)."""
        if self.menus is not None:
            return self.menus[gi][self.menus[gi] >= lo]
        ks = np.arange(int(lo), int(self.n[gi]) + 1)
        if self.step > 1:
            ks = np.minimum(self.n[gi], np.ceil(ks / self.step).astype(np.int64) * self.step)
        return np.unique(ks)


def _checked_menu(menu: Any, n: int, gi: int) -> np.ndarray:
    menu = np.unique(np.asarray(menu, dtype=np.int64))
    if len(menu) == 0 or menu[-1] != n or menu[0] < 1:
        raise ValueError(f"latency model width_menu({gi}) must be ascending counts in [1, {n}] ending at the "
                         f"group's full width {n}, got {menu.tolist()[:8]}")
    return menu


def width_menus(n: np.ndarray, round_to: int | str, latency: Any = None,
                unit_channels: np.ndarray | None = None) -> WidthMenus:
    """The menus for ``round_to`` (an int >= 1, or ``"auto"``) and an optional latency model; ``unit_channels``:
    channels per unit of each group (default 1) for the heuristic menus."""
    units = np.ones(len(n), dtype=np.int64) if unit_channels is None else np.asarray(unit_channels)
    if round_to == "auto":
        if latency is not None:
            menus = [_checked_menu(latency.width_menu(gi), int(k), gi) for gi, k in enumerate(n)]
            steps = WidthMenus(n, menus=menus, policy=f"latency steps of {latency.target.key}")
            if getattr(getattr(latency, "target", None), "runtime", None) in BLOCKED_LAYOUT_RUNTIMES:
                return WidthMenus(n, menus=[coarse_menu(int(k), int(u)) for k, u in zip(n, units)], fallback=steps,
                                  policy=f"{steps.policy}, multiples of {LAYOUT_BLOCK} first ({latency.target.runtime} "
                                         f"runs a {LAYOUT_BLOCK}-channel blocked layout)")
            return steps
        fine = WidthMenus(n, menus=[heuristic_menu(int(k), int(u)) for k, u in zip(n, units)], policy=HEURISTIC_POLICY)
        return WidthMenus(n, menus=[coarse_menu(int(k), int(u)) for k, u in zip(n, units)], policy=COARSE_POLICY,
                          fallback=fine)
    if isinstance(round_to, bool) or not isinstance(round_to, (int, np.integer)) or round_to < 1:
        raise ValueError(f"round_to must be 'auto' or an int >= 1, got {round_to!r}")
    return WidthMenus(n, step=int(round_to), policy="exact widths" if round_to == 1
                      else f"multiples of {int(round_to)}")

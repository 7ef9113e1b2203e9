"""A deterministic latency model with exact staircases, for tests (no timing, no runtime).

Each cost term of the dependency graph (``coef · Π size_c``) takes ``ms_per_mac · coef · Π ⌈size_c / step⌉ ·
step`` ms: every width is rounded up to a multiple of ``step``, as if the hardware ran channels in blocks
of ``step``.  So a layer's time is an exact staircase whose right ends are the multiples of ``step``, and
the width menu of a group is every unit count at which one of its classes is a multiple of ``step`` (plus
its full width).  ``measure_ms`` traces each module and applies the same formula to it, so measuring the
pruned module gives exactly ``predict_ms`` of its keep mask.  The target's batch is ignored (the formula
reads the graph as traced).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from .model import Target

__all__ = ["FakeLatencyModel"]


class FakeLatencyModel:
    """:class:`~graphprune.latency.LatencyModel` with ``time = Σ coef · Π ceil(size / step) · step`` (scaled).

    Args:
        graph: the dependency graph to price.
        target: reported as the model's target (not used for pricing).
        step: the staircase's block width.
        ms_per_mac: time of one rounded multiply-accumulate.
        overhead_ms: a constant added to every prediction and measurement.
    """

    def __init__(self, graph, target: Target = Target(), *, step: int = 8, ms_per_mac: float = 1e-6,
                 overhead_ms: float = 0.0):
        if step < 1:
            raise ValueError(f"FakeLatencyModel step must be >= 1, got {step}")
        self.graph, self.target, self.step = graph, target, int(step)
        self.ms_per_mac, self.overhead_ms = float(ms_per_mac), float(overhead_ms)
        terms = graph._mac_terms
        width = max((len(i) for _, _, i in terms), default=0)
        self._index = np.full((len(terms), width), len(graph.class_size), dtype=np.int64)
        for row, (_, _, idx) in enumerate(terms):
            self._index[row, :len(idx)] = idx
        self._coef = np.array([c for _, c, _ in terms], dtype=np.float64)
        self._cost_classes = {int(c) for _, _, idx in terms for c in idx}
        self.dense_ms = self.predict_ms(graph.full_keep())

    def _rounded(self, sizes: np.ndarray) -> np.ndarray:
        return np.ceil(sizes / self.step) * self.step

    def predict_ms(self, keep: np.ndarray) -> float:
        sizes = self._rounded(self.graph.class_sizes(np.asarray(keep, dtype=bool)).astype(np.float64))
        padded = np.append(sizes, 1.0)
        return self.overhead_ms + self.ms_per_mac * float(self._coef @ padded[self._index].prod(axis=1))

    def width_menu(self, group_index: int) -> np.ndarray:
        """Unit counts where some class of the group that prices a layer is a multiple of ``step``."""
        g = self.graph.groups[group_index]
        n = g.n_units
        keep = self.graph.full_keep()
        keep[g.units] = False
        base = self.graph.class_sizes(keep)
        k = np.arange(1, n + 1)
        right_end = k == n
        for c in g.classes:
            per_unit = (self.graph.class_size[c] - base[c]) / n
            if c in self._cost_classes and per_unit > 0:
                right_end |= np.round(base[c] + per_unit * k).astype(np.int64) % self.step == 0
        return k[right_end]

    def measure_ms(self, modules: Sequence[torch.nn.Module], example_inputs: Any) -> list[float]:
        """The same formula applied to each module, traced on ``example_inputs``."""
        from ..depgraph import build_dependency_graph
        from ..trace import trace

        out = []
        for module in modules:
            graph = build_dependency_graph(trace(module, example_inputs))
            fake = FakeLatencyModel(graph, self.target, step=self.step, ms_per_mac=self.ms_per_mac,
                                    overhead_ms=self.overhead_ms)
            out.append(fake.dense_ms)
        return out

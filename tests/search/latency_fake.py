"""A small deterministic latency model for tests (implements ``graphprune.latency.LatencyModel``).

Every cost term of the dependency graph (``graph._mac_terms``) takes ``coef · Π size`` nanoseconds with
each prunable size padded up to a multiple of 8: times step at multiples of 8, as on vector hardware.  ``measure_ms`` re-inspects each module
and computes the same sum from its own graph, so a pruned module measures what ``predict_ms`` predicted —
except that modules after the first are scaled by ``measure_scale`` (the dense model comes first in
``measure_ms([dense, pruned], x)``), to make prediction and measurement disagree on purpose.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

import graphprune
from graphprune.latency import Target

STEP = 8


def _padded_ns(graph, sizes: np.ndarray) -> float:
    prunable = np.asarray(graph._unit_counts.sum(axis=1)).ravel() > 0  # spatial, kernel, input dims are not
    padded = np.where(prunable, np.ceil(sizes / STEP) * STEP, sizes)
    return float(sum(coef * np.prod(padded[idx]) for _, coef, idx in graph._mac_terms))


class FakeLatency:
    def __init__(self, graph, target: Target = Target(), measure_scale: float = 1.0):
        self.graph, self.target, self.measure_scale = graph, target, measure_scale
        self.measured: list[list[float]] = []
        self.dense_ms = self.predict_ms(graph.full_keep())

    def predict_ms(self, keep: np.ndarray) -> float:
        return 1e-6 * _padded_ns(self.graph, self.graph.class_sizes(keep).astype(np.float64))

    def width_menu(self, group_index: int) -> np.ndarray:
        n = self.graph.groups[group_index].n_units
        return np.unique(np.append(np.arange(STEP, n + 1, STEP), n))

    def measure_ms(self, modules, example_inputs) -> list[float]:
        times = []
        for i, module in enumerate(modules):
            graph = graphprune.inspect(module, example_inputs)
            ms = 1e-6 * _padded_ns(graph, graph.class_size.astype(np.float64))
            times.append(ms * (self.measure_scale if i else 1.0))
        self.measured.append(times)
        return times


def convnet() -> nn.Module:
    """Three convs of 64 / 56 / 40 channels (not all multiples of 16: the menus matter) and a classifier."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.Conv2d(64, 56, 3, padding=1), nn.BatchNorm2d(56), nn.ReLU(),
                         nn.Conv2d(56, 40, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(40, 10)).eval()


X = torch.randn(1, 3, 12, 12)  # the example input of convnet()

"""Size and BOPs of a (channels, bit-widths) candidate, from the dependency graph's shapes — no model built.

For a keep mask over units and a weight bit-width ``b_l`` per quantisable layer ``l``:

    size(keep, b) = Σ_l numel(W_l) · b_l / 8  +  4 · (params − Σ_l numel(W_l))          bytes
    BOPs(keep, b) = Σ_l MACs_l · b_l · a_l    +  32 · 32 · (MACs − Σ_l MACs_l)

with ``a_l = 8`` for an int8 layer and 32 for an fp32 one; every other parameter (biases, norms) is counted
as fp32.  An int4 Linear layer (weight-only, ``int4.py``) counts its bytes on disk exactly — packed nibbles of
padded blocks plus an fp32 scale (and a packed zero point) per block, ``int4.int4_layer_bytes`` — in place of
``numel · b_l / 8``, and ``b_l · a_l = 4 · 32`` BOPs per MAC (its activations stay fp32, so under a BOPs budget
int4 costs more than int8; under a size budget it costs less) — ``4 · 8`` at ``accuracy_level`` 4.
A measured-latency budget (``QuantBudget.latency`` / ``.ms``) is planned under an int8-aware time proxy and
checked by measuring (``quantize/latency.py``):

    time(keep, b) = Σ_l MACs_l · c(b_l)  +  (MACs − Σ_l MACs_l)          c(8) = INT8_MAC_COST, c(32) = 1

Both are monotone in ``keep`` and in ``b``, so a bisection over either meets a budget from below —
the searches in ``joint.py`` meet budgets by construction.  The size is a prediction: the ONNX file also
holds scales, zero points and the graph; ``compress`` reports the measured bytes beside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..budget import BudgetError
from ..depgraph import DependencyGraph, Dim
from .int4 import INT4, Int4Scheme, int4_layer_bytes
from .layers import QuantLayer, quant_layers

__all__ = ["QuantBudget", "QuantCost", "QUANT_METRICS", "INT8_MAC_COST"]

QUANT_METRICS = ("size", "bops", "latency")
PROXY_METRICS = ("time",)  # NOTE: internal: what a latency budget is planned under (never a user's budget)
# NOTE: a guess at an int8 MAC's cost relative to an fp32 one on ORT's CPU kernels (MLAS); the measure-and-
# re-plan loop corrects the proxy's error, so it only needs to order plans, not predict them
INT8_MAC_COST = 0.5


@dataclass(frozen=True)
class QuantBudget:
    """A budget on the compressed model: ``ratio`` of the dense fp32 model's size, BOPs or measured latency (or
    absolute bytes / ms).

    Build with :meth:`size`, :meth:`bytes`, :meth:`bops`, :meth:`latency` or :meth:`ms`.
    """

    metric: str
    ratio: float | None = None
    limit: float | None = None   # absolute bytes (metric "size") or ms (metric "latency") instead of a ratio

    def __post_init__(self) -> None:
        if self.metric not in QUANT_METRICS + PROXY_METRICS:
            raise BudgetError(f"quantisation budget metric must be one of {QUANT_METRICS}, got {self.metric!r}")
        if self.limit is not None and self.metric not in ("size", "latency"):
            raise BudgetError(f"a {self.metric} budget takes a ratio of the dense fp32 model's, not an absolute limit")
        if (self.ratio is None) == (self.limit is None):
            raise BudgetError("a quantisation budget takes a ratio or an absolute limit, not both")
        if self.ratio is not None and not 0.0 < self.ratio <= 1.0:
            raise BudgetError(f"a {self.metric} budget ratio must be in (0, 1], got {self.ratio}")
        if self.limit is not None and not self.limit > 0:
            raise BudgetError(f"an absolute {self.metric} budget must be positive, got {self.limit}")

    @classmethod
    def size(cls, ratio: float) -> "QuantBudget":
        return cls("size", ratio=float(ratio))

    @classmethod
    def bytes(cls, n: float) -> "QuantBudget":
        return cls("size", limit=float(n))

    @classmethod
    def bops(cls, ratio: float) -> "QuantBudget":
        return cls("bops", ratio=float(ratio))

    @classmethod
    def latency(cls, ratio: float) -> "QuantBudget":
        """At most ``ratio`` of the dense fp32 model's measured time on the target (ORT CPU; ``compress(target=)``)."""
        return cls("latency", ratio=float(ratio))

    @classmethod
    def ms(cls, ms: float) -> "QuantBudget":
        """At most ``ms`` milliseconds measured on the target."""
        return cls("latency", limit=float(ms))

    @property
    def needs_latency(self) -> bool:
        return self.metric == "latency"

    def allowed(self, dense: float) -> float:
        """The largest allowed cost, given the dense fp32 model's cost in this metric."""
        return self.limit if self.limit is not None else self.ratio * dense

    def describe(self) -> str:
        if self.limit is not None:
            return f"{self.limit:.3f} ms" if self.metric == "latency" else f"{self.limit:.0f} bytes"
        return f"{self.ratio:.3f} of dense fp32 {self.metric}"


class QuantCost:
    """Evaluates size / BOPs of candidates on one dependency graph (see module docstring)."""

    def __init__(self, graph: DependencyGraph, int4: Int4Scheme | None = None):
        self.graph = graph
        self.int4 = int4 or Int4Scheme()
        self.layers: list[QuantLayer] = quant_layers(graph.traced.gm)
        self._weight_dims = [self._dims_of(layer.weight_key) for layer in self.layers]
        self.dense_macs = graph.cost().macs
        self.dense_params = graph.cost().params

    def _dims_of(self, key: str) -> list[tuple[int, int]]:
        """(class index or -1, fixed size) per axis of a parameter."""
        shape = self.graph.shapes[key]
        return [(self.graph.dim_class.get(Dim(key, a), -1), int(n)) for a, n in enumerate(shape)]

    def _layer_numbers(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float, list]:
        sizes = self.graph.class_sizes(keep)
        shapes = [[sizes[c] if c >= 0 else n for c, n in dims] for dims in self._weight_dims]
        numel = np.array([np.prod(shape, dtype=np.float64) for shape in shapes])
        node_macs = self.graph.node_macs(keep)
        macs = np.array([node_macs.get(layer.node, 0.0) for layer in self.layers])
        cost = self.graph.cost(keep)
        return numel, macs, cost.params - numel.sum(), cost.macs - macs.sum(), shapes

    def _bits(self, bits: dict[str, int]) -> np.ndarray:
        return np.array([bits.get(layer.name, 8) for layer in self.layers], dtype=np.float64)

    def size_bytes(self, keep: np.ndarray, bits: dict[str, int]) -> float:
        numel, _, other_params, _, shapes = self._layer_numbers(keep)
        w = self._bits(bits)
        layer_bytes = numel * w / 8
        for i in np.flatnonzero(w == INT4):
            layer_bytes[i] = int4_layer_bytes(shapes[i][0], shapes[i][1], self.int4)
        return float(layer_bytes.sum() + 4 * other_params)

    def bops(self, keep: np.ndarray, bits: dict[str, int]) -> float:
        _, macs, _, other_macs, _ = self._layer_numbers(keep)
        w = self._bits(bits)
        a = np.where(w == 8, 8.0, 32.0)  # NOTE: fp32 and weight-only int4 layers compute on fp32 activations
        if self.int4.accuracy_level == 4:  # ... unless MatMulNBits quantises them to int8 itself
            a[w == INT4] = 8.0
        return float((macs * w * a).sum() + 32 * 32 * other_macs)

    def time_proxy(self, keep: np.ndarray, bits: dict[str, int]) -> float:
        """MACs with every int8 layer's weighted by ``INT8_MAC_COST`` (module docstring)."""
        _, macs, _, other_macs, _ = self._layer_numbers(keep)
        # NOTE: weight-only int4 layers compute in fp32 (measured slower than int8, bench/results/joint_quant_int4.md)
        cost = np.where(self._bits(bits) == 8, INT8_MAC_COST, 1.0)
        return float((macs * cost).sum() + other_macs)

    def of(self, metric: str, keep: np.ndarray, bits: dict[str, int]) -> float:
        if metric == "latency":
            raise BudgetError("a measured-latency budget has no closed-form cost: plan it under the 'time' proxy "
                              "(graphprune.quantize.latency)")
        if metric == "time":
            return self.time_proxy(keep, bits)
        return self.size_bytes(keep, bits) if metric == "size" else self.bops(keep, bits)

    def dense(self, metric: str) -> float:
        """The dense fp32 model's cost (the reference of budget ratios)."""
        fp32 = {layer.name: 32 for layer in self.layers}
        return self.of(metric, self.graph.full_keep(), fp32)

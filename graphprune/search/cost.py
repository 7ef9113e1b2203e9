"""The cost a budget bounds, behind one interface: ``.of(keep)``, ``.dense``, ``.ratio(keep)``.

Allocation and every search compare ``cost.ratio(keep)`` with ``budget.ratio``; which cost that is comes from
the budget (``budget_cost``):

* ``macs`` / ``params``: :class:`FastCost`, the dependency graph's cost polynomial;
* ``latency``: :class:`LatencyCost`, a latency model's ``predict_ms(keep) / dense_ms``;
* several at once (``Budget.macs(0.5) & Budget.latency(0.6)``): :class:`CombinedCost`, the largest of the
  normalised ratios ``ratio_i / cap_i``, scaled back to the first budget's ratio, so one bisection against
  ``budget.ratio`` enforces every cap.

Time without a measurement (:class:`TimeProxyCost`): ``MACs + MACS_PER_ELEMENT · activation elements``.  Element-wise
ops, depthwise convs and layout conversions take time in proportion to the activations they write, not to MACs
(MACs grow with the product of two widths, activations with one).  Measured on ONNX Runtime CPU, 1 thread, batch 1
(per-node profile): SiLU alone is 22 % of EfficientNet-B0's kernel time, the SE gating multiply, NCHWc reorders and
pooling another 13 %; ReLU, batch norm and residual adds after a conv cost nothing (fused into it), so they are
not counted (``EPILOGUE_OPS``).  Dense times of ResNet-18/50 and MobileNetV2/V3 fit ``a · MACs + b · elements``
with ``b / a`` = 30-42 MACs per element (2-core VM at load ~7); ``MACS_PER_ELEMENT`` is half that, on purpose:
the proxy only ranks groups for ``time_shaping.py``, and the smaller weight already finds the measured gains.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from ..budget import Budget, BudgetError
from ..depgraph import DependencyGraph
from ..depgraph.rule_context import Dim

__all__ = ["BudgetCost", "FastCost", "LatencyCost", "CombinedCost", "ActivationCost", "TimeProxyCost",
           "MACS_PER_ELEMENT", "budget_cost", "resolve_ms"]

MACS_PER_ELEMENT = 16.0  # time of writing one activation element, in MACs (conservative: module docstring)
# NOTE: ops whose output costs no time of its own at inference: views, and a conv's epilogue — batch norm,
# the residual add and ReLU-like activations right after a conv are fused into it (ONNX Runtime's Conv+Add+Relu
# and NCHWc fusions, OpenVINO's, cuDNN's).  SiLU / GELU / hardswish, a standalone batch norm (pre-activation),
# concat, pooling and the SE gating multiply are not fused, and are counted.
VIEW_OPS = ("view", "reshape", "flatten", "permute", "transpose", "contiguous", "getitem", "squeeze", "unsqueeze",
            "expand", "dropout", "identity", "size", "alias", "detach")
EPILOGUE_OPS = ("batch_norm", "batchnorm", "add", "relu", "hardtanh", "leaky_relu", "leakyrelu", "sigmoid", "clamp")
CONV_OPS = ("conv",)


class BudgetCost(Protocol):
    """What a budget bounds: ``of(keep)`` in its own unit, ``dense = of(full)``, ``ratio = of / dense``, and
    ``describe(ratio)`` for messages (e.g. ``"0.4 ms (0.40 of the dense 1.0 ms, predicted on ort-cpu-…)"``)."""

    dense: float

    def of(self, keep: np.ndarray) -> float: ...

    def ratio(self, keep: np.ndarray) -> float: ...

    def describe(self, ratio: float) -> str: ...


class FastCost:
    """``graph.cost(keep)`` for one metric: the graph's cost polynomial (``depgraph.cost_model.CostTerms``,
    read once per graph) evaluated on the class sizes of ``keep``.

    NOTE: searches evaluate the cost thousands of times (the CACP bounds bisect at every step); the terms
    are grouped by arity, so one evaluation is a few vectorised numpy products.
    """

    def __init__(self, graph: DependencyGraph, metric: str):
        self.metric = metric
        self.graph = graph
        self.terms = graph.cost_terms(metric)
        self.constant = self.terms.constant
        self.dense = self.of(graph.full_keep())

    def of(self, keep: np.ndarray) -> float:
        return self.terms.numpy(self.graph.class_sizes(keep))

    def ratio(self, keep: np.ndarray) -> float:
        return self.of(keep) / self.dense if self.dense else 1.0

    def describe(self, ratio: float) -> str:
        return f"{ratio:.4f} of {self.metric}"


class LatencyCost:
    """Predicted time of the pruned model, as a fraction of the predicted dense time."""

    def __init__(self, latency: Any):
        self.latency = latency
        self.dense = float(latency.dense_ms)

    def of(self, keep: np.ndarray) -> float:
        return float(self.latency.predict_ms(keep))

    def ratio(self, keep: np.ndarray) -> float:
        return self.of(keep) / self.dense if self.dense else 1.0

    def describe(self, ratio: float) -> str:
        return (f"{ratio * self.dense:.4g} ms ({ratio:.4f} of the dense {self.dense:.4g} ms, predicted on "
                f"{self.latency.target.key})")


class ActivationCost:
    """Elements of every activation the model computes (views and fused conv epilogues left out), as a polynomial of the
    class sizes: one term per value, the product of its axes' sizes."""

    def __init__(self, graph: DependencyGraph):
        self.graph = graph
        rows = [[graph.dim_class.get(Dim(v, a), -1) for a in range(len(graph.shapes[v]))]
                for v in _computed_values(graph)]
        consts = [float(np.prod([graph.shapes[v][a] for a, c in enumerate(r) if c < 0]))
                  for v, r in zip(_computed_values(graph), rows)]
        width = max((len(r) for r in rows), default=0)
        n = len(graph.class_size)
        self._index = np.array([[c if c >= 0 else n for c in r] + [n] * (width - len(r)) for r in rows],
                               dtype=np.int64).reshape(len(rows), width)
        self._coef = np.array(consts, dtype=np.float64)
        self.dense = self.of(graph.full_keep())

    def of(self, keep: np.ndarray) -> float:
        if not len(self._coef):
            return 0.0
        padded = np.append(self.graph.class_sizes(keep).astype(np.float64), 1.0)
        return float(self._coef @ padded[self._index].prod(axis=1))

    def ratio(self, keep: np.ndarray) -> float:
        return self.of(keep) / self.dense if self.dense else 1.0

    def describe(self, ratio: float) -> str:
        return f"{ratio:.4f} of activation elements"


def _op_name(gm, node) -> str:
    what = type(gm.get_submodule(node.target)).__name__ if node.op == "call_module" else \
        getattr(node.target, "__name__", str(node.target))
    return what.lower()


def _computed_values(graph: DependencyGraph) -> list[str]:
    """Names of the traced nodes that compute an activation: not a view, a parameter, or a conv's fused
    epilogue (an ``EPILOGUE_OPS`` node whose input is a conv, or an epilogue of one, used by it alone)."""
    gm = graph.traced.gm
    out, fused = [], set()
    for node in gm.graph.nodes:
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        name = _op_name(gm, node)
        if any(f in name for f in EPILOGUE_OPS) and any(
                (n.name in fused or any(c in _op_name(gm, n) for c in CONV_OPS)) and len(n.users) == 1
                for n in node.all_input_nodes if n.op in ("call_module", "call_function", "call_method")):
            fused.add(node.name)
            continue
        if node.name in graph.shapes and not any(f in name for f in VIEW_OPS):
            out.append(node.name)
    return out


class TimeProxyCost:
    """Time without a measurement: ``MACs + MACS_PER_ELEMENT · activation elements`` (module docstring), in MACs."""

    def __init__(self, graph: DependencyGraph, macs_per_element: float = MACS_PER_ELEMENT):
        self.macs, self.elements, self.macs_per_element = FastCost(graph, "macs"), ActivationCost(graph), macs_per_element
        self.dense = self.macs.dense + macs_per_element * self.elements.dense

    def of(self, keep: np.ndarray) -> float:
        return self.macs.of(keep) + self.macs_per_element * self.elements.of(keep)

    def ratio(self, keep: np.ndarray) -> float:
        return self.of(keep) / self.dense if self.dense else 1.0

    def describe(self, ratio: float) -> str:
        return f"{ratio:.4f} of the time proxy (MACs + {self.macs_per_element:g} x activation elements)"


class CombinedCost:
    """``scale · max_i cost_i.ratio(keep) / cap_i``: at most ``scale`` exactly when every cap holds."""

    def __init__(self, costs: list[BudgetCost], caps: list[float], scale: float):
        self.costs, self.caps, self.scale = costs, caps, scale
        self.dense = 1.0

    def of(self, keep: np.ndarray) -> float:
        return self.ratio(keep)

    def ratio(self, keep: np.ndarray) -> float:
        return self.scale * max(c.ratio(keep) / cap for c, cap in zip(self.costs, self.caps))

    def describe(self, ratio: float) -> str:
        # NOTE: the floor is reported per cap, so the user sees which one cannot be met
        return f"{ratio:.4f} (combined; per cap: " + "; ".join(
            f"{c.describe(ratio * cap / self.scale)}" for c, cap in zip(self.costs, self.caps)) + ")"


def _missing_latency(budget: Budget) -> BudgetError:
    return BudgetError(f"budget {budget.describe()} needs a latency model: pass target=Target(...) (measured) or "
                       "latency_model=... to prune, or AllocationConfig(latency=...) to allocate")


def resolve_ms(budget: Budget, latency: Any) -> Budget:
    """``budget`` with every ``Budget.ms`` part turned into a fraction of the predicted dense time (capped
    at 1: a time above the dense model's keeps it whole)."""
    if all(p.time_ms is None for p in budget.parts()):
        return budget
    if latency is None:
        raise _missing_latency(budget)
    dense = float(latency.dense_ms)
    parts = [replace(p, ratio=min(1.0, p.time_ms / dense), time_ms=None) if p.time_ms is not None else p for p in budget.parts()]
    return replace(parts[0], also=tuple(parts[1:]))


def _single_cost(graph: DependencyGraph, part: Budget, latency: Any) -> BudgetCost:
    if part.metric != "latency":
        return FastCost(graph, part.metric)
    if latency is None:
        raise _missing_latency(part)
    if part.time_ms is not None:
        raise BudgetError(f"budget {part.describe()} is absolute: resolve it first (graphprune.search.cost.resolve_ms)")
    return LatencyCost(latency)


def budget_cost(graph: DependencyGraph, budget: Budget, latency: Any = None) -> BudgetCost:
    """The cost object ``budget.ratio`` bounds (module docstring); ``latency`` is a ``LatencyModel``."""
    parts = budget.parts()
    if len(parts) == 1:
        return _single_cost(graph, parts[0], latency)
    return CombinedCost([_single_cost(graph, p, latency) for p in parts], [p.ratio for p in parts], budget.ratio)

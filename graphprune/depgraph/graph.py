"""The dependency graph: dim classes, prunable units (coupled channel sets) and groups.

Math.  Let E be the set of all elements (one per index of every dim class).  Identity couplings were
merged into classes by the builder; index maps are edges on E.  The connected components of (E, edges)
are the *coupled channel sets*: removing one element forces removing its whole component.  A component
is a **unit** (prunable) when none of its elements is frozen and at least one lies in a *source* dim
(the output features of a layer — pruning anything else saves nothing).  Units touching the same set of
classes form a **group**: the layers that must shrink together, each unit one channel of the group.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .rule_context import Dim
from .cost_model import CostTerms

if TYPE_CHECKING:  # pragma: no cover
    from ..trace import TracedModel

__all__ = ["Group", "FrozenInfo", "Cost", "DependencyGraph"]


@dataclass
class Group:
    """Layers whose channels are coupled; each unit is one coupled channel set.

    Attributes:
        name: stable id, ``"<parameter>:<axis>"`` of the group's first producing parameter.
        anchor: that parameter dim.
        unit_ids: per unit, its smallest index in the anchor dim (stable across re-tracing).
        first_unit: index of this group's first unit in the graph-wide unit numbering.
        classes: indices of the dim classes the group spans.
        members: every dim that shrinks with the group.
        exact: False when an op over these channels changes with their number (e.g. LayerNorm).
    """

    name: str
    anchor: Dim
    unit_ids: np.ndarray
    first_unit: int
    classes: tuple[int, ...]
    members: list[Dim] = field(default_factory=list)
    inexact_reasons: list[str] = field(default_factory=list)

    @property
    def n_units(self) -> int:
        return len(self.unit_ids)

    @property
    def units(self) -> slice:
        """Slice of this group's units in graph-wide unit arrays."""
        return slice(self.first_unit, self.first_unit + self.n_units)

    @property
    def exact(self) -> bool:
        return not self.inexact_reasons

    @property
    def parameters(self) -> list[Dim]:
        return [d for d in self.members if d.value.startswith("@")]


@dataclass
class FrozenInfo:
    """A frozen coupled set that would otherwise be prunable, and why it is frozen."""

    dims: list[Dim]
    reason: str


@dataclass
class Cost:
    """Multiply-accumulates and parameter count of a model (as traced, on its example inputs)."""

    macs: float
    params: float


class DependencyGraph:
    """Result of stage 2; see module docstring.  Built by ``build_dependency_graph``."""

    def __init__(self, traced: "TracedModel"):
        self.traced = traced
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dim_class: dict[Dim, int] = {}
        self.class_size = np.zeros(0, dtype=np.int64)
        self.class_offset = np.zeros(0, dtype=np.int64)
        self.class_dims: list[list[Dim]] = []
        self.element_unit = np.zeros(0, dtype=np.int64)  # -1 where not prunable
        self.element_frozen = np.zeros(0, dtype=bool)
        self.groups: list[Group] = []
        self.frozen: list[FrozenInfo] = []
        self.reasons: dict[Dim, str] = {}
        self.param_alias: dict[str, str] = {}
        self._unit_counts: sp.csr_matrix | None = None
        self._mac_terms: list[tuple[str, float, list[int]]] = []
        self._param_terms: list[tuple[str, list[int]]] = []
        self.unmodeled_macs = 0.0  # cost of ops without a rule (frozen, so constant)
        self.attention = "head_dim"  # what a unit of multi-head attention is (depgraph/heads.py)
        self.head_splits: dict = {}  # reshape node name -> heads.HeadSplit
        self.grouped = "group_width"  # what a unit of a grouped conv is (depgraph/conv_groups.py)
        self.grouped_convs: dict = {}  # conv node name -> conv_groups.GroupedConv

    # ---- sizes and costs under a keep mask over units ------------------------------------------
    @property
    def n_units(self) -> int:
        return sum(g.n_units for g in self.groups)

    def full_keep(self) -> np.ndarray:
        return np.ones(self.n_units, dtype=bool)

    def class_sizes(self, keep: np.ndarray) -> np.ndarray:
        """New size of every dim class when only units with ``keep`` survive."""
        removed = self._unit_counts @ (~keep).astype(np.int64)
        return self.class_size - removed

    def dim_size(self, dim: Dim, keep: np.ndarray) -> int:
        return int(self.class_sizes(keep)[self.dim_class[dim]])

    def cost_terms(self, metric: str) -> CostTerms:
        """The ``metric`` ("macs" or "params") cost polynomial, read once (``cost_model.py``)."""
        cache = self.__dict__.setdefault("_cost_terms", {})
        if metric not in cache:
            cache[metric] = CostTerms.of(self, metric)
        return cache[metric]

    def cost(self, keep: np.ndarray | None = None) -> Cost:
        """MACs and params of the model pruned to ``keep`` (exact for ops with a rule; ops without a rule
        are a measured constant, ``unmodeled_macs``)."""
        sizes = self.class_sizes(self.full_keep() if keep is None else keep)
        return Cost(macs=self.cost_terms("macs").numpy(sizes), params=self.cost_terms("params").numpy(sizes))

    def node_macs(self, keep: np.ndarray | None = None) -> dict[str, float]:
        sizes = self.class_sizes(self.full_keep() if keep is None else keep).astype(np.float64)
        out: dict[str, float] = {}
        for node, coef, idx in self._mac_terms:
            out[node] = out.get(node, 0.0) + coef * float(np.prod(sizes[idx]))
        return out

    def kept_indices(self, dim: Dim, keep: np.ndarray) -> np.ndarray:
        """Indices along ``dim`` that survive; all of them for dims no unit touches."""
        c = self.dim_class[dim]
        lo = self.class_offset[c]
        units = self.element_unit[lo:lo + self.class_size[c]]
        alive = units < 0
        # NOTE: index ``keep`` only at real units: a graph with no units has an empty ``keep``
        alive[~alive] = keep[units[~alive]]
        return np.nonzero(alive)[0]

    def dim_fully_frozen(self, dim: Dim) -> bool:
        c = self.dim_class.get(dim)
        if c is None:
            return True
        lo = self.class_offset[c]
        return bool(np.all(self.element_unit[lo:lo + self.class_size[c]] < 0))

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no group named {name!r}; groups: {[g.name for g in self.groups][:10]}...")

    def group_macs_share(self) -> dict[str, float]:
        """Fraction of total MACs in nodes whose cost depends on each group's channels."""
        total = self.cost().macs or 1.0
        node_of_term = {}
        for node, coef, idx in self._mac_terms:
            node_of_term.setdefault(node, set()).update(idx)
        macs = self.node_macs()
        share = {}
        for g in self.groups:
            cls = set(g.classes)
            share[g.name] = sum(macs[n] for n, idx in node_of_term.items() if idx & cls) / total
        return share

    def summary(self, max_groups: int = 60) -> str:
        from .views import summary
        return summary(self, max_groups)

    def to_networkx(self):
        from .views import to_networkx
        return to_networkx(self)

    def to_dot(self) -> str:
        from .views import to_dot
        return to_dot(self)

    def __repr__(self) -> str:
        c = self.cost()
        return (f"DependencyGraph({len(self.groups)} groups, {self.n_units} prunable units, "
                f"{len(self.frozen)} frozen sets, {c.macs / 1e6:.2f} MMACs, {c.params / 1e6:.3f} M params)")

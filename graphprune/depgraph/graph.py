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
from scipy.sparse.csgraph import connected_components

from .context import Dim

if TYPE_CHECKING:  # pragma: no cover
    from ..trace import TracedModel
    from .builder import _Builder

__all__ = ["Group", "DependencyGraph", "finalize"]


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

    def _terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cost terms as arrays: (coefficients, class-index matrix padded with a size-1 slot, is-MACs)."""
        if getattr(self, "_term_arrays", None) is None:
            rows = [(coef, idx, True) for _, coef, idx in self._mac_terms]
            rows += [(1.0, idx, False) for _, idx in self._param_terms]
            pad = len(self.class_size)  # index of the appended 1.0
            width = max((len(r[1]) for r in rows), default=0)
            index = np.full((len(rows), width), pad, dtype=np.int64)
            for i, (_, idx, _) in enumerate(rows):
                index[i, :len(idx)] = idx
            self._term_arrays = (np.array([r[0] for r in rows], dtype=np.float64), index,
                                 np.array([r[2] for r in rows], dtype=bool))
        return self._term_arrays

    def cost(self, keep: np.ndarray | None = None) -> Cost:
        """MACs and params of the model pruned to ``keep`` (exact for ops with a rule; ops without a rule
        are a measured constant, ``unmodeled_macs``)."""
        sizes = self.class_sizes(self.full_keep() if keep is None else keep).astype(np.float64)
        coef, index, is_macs = self._terms()
        values = coef * np.append(sizes, 1.0)[index].prod(axis=1)
        return Cost(macs=float(self.unmodeled_macs + values[is_macs].sum()), params=float(values[~is_macs].sum()))

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
        from .inspect import summary
        return summary(self, max_groups)

    def to_networkx(self):
        from .inspect import to_networkx
        return to_networkx(self)

    def to_dot(self) -> str:
        from .inspect import to_dot
        return to_dot(self)

    def __repr__(self) -> str:
        c = self.cost()
        return (f"DependencyGraph({len(self.groups)} groups, {self.n_units} prunable units, "
                f"{len(self.frozen)} frozen sets, {c.macs / 1e6:.2f} MMACs, {c.params / 1e6:.3f} M params)")


# ---- finalize: builder state -> DependencyGraph ---------------------------------------------------
def _classes(b: "_Builder", g: DependencyGraph) -> None:
    dims = sorted(b.parent, key=b.order.__getitem__)
    root_index: dict[Dim, int] = {}
    for d in dims:
        r = b.find(d)
        if r not in root_index:
            root_index[r] = len(root_index)
            g.class_dims.append([])
        c = root_index[r]
        g.dim_class[d] = c
        g.class_dims[c].append(d)
    g.class_size = np.array([b.shapes[ds[0].value][ds[0].axis] for ds in g.class_dims], dtype=np.int64)
    g.class_offset = np.concatenate([[0], np.cumsum(g.class_size)[:-1]]).astype(np.int64)
    g._root_frozen = np.array([b.find(ds[0]) in b.root_frozen for ds in g.class_dims], dtype=bool)


def _components(b: "_Builder", g: DependencyGraph) -> tuple[np.ndarray, int]:
    n = int(g.class_size.sum())
    src = [g.class_offset[g.dim_class[a]] + ia for a, ia, _, _ in b.links]
    dst = [g.class_offset[g.dim_class[c]] + ic for _, _, c, ic in b.links]
    src = np.concatenate(src) if src else np.zeros(0, dtype=np.int64)
    dst = np.concatenate(dst) if dst else np.zeros(0, dtype=np.int64)
    adj = sp.coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n)).tocsr()
    return connected_components(adj, directed=False)[::-1]


def _element_flags(b: "_Builder", g: DependencyGraph, dims: set[Dim]) -> np.ndarray:
    flags = np.zeros(int(g.class_size.sum()), dtype=bool)
    for c in {g.dim_class[d] for d in dims if d in g.dim_class}:
        flags[g.class_offset[c]:g.class_offset[c] + g.class_size[c]] = True
    return flags


def _units(b: "_Builder", g: DependencyGraph, comp: np.ndarray, n_comp: int) -> np.ndarray:
    """Component ids that are prunable units."""
    frozen = np.repeat(g._root_frozen, g.class_size)
    for d, idx, _ in b.element_freezes:
        frozen[g.class_offset[g.dim_class[d]] + idx] = True
    g.element_frozen = frozen
    source = _element_flags(b, g, {d for d in b.sources if d in g.dim_class})
    comp_frozen = np.bincount(comp, weights=frozen, minlength=n_comp) > 0
    comp_source = np.bincount(comp, weights=source, minlength=n_comp) > 0
    g._comp_frozen, g._comp_source = comp_frozen, comp_source
    return np.nonzero(~comp_frozen & comp_source)[0]


def _footprints(g: DependencyGraph, comp: np.ndarray, unit_comps: np.ndarray) -> dict[tuple, list[int]]:
    n_cls = len(g.class_size)
    el_class = np.repeat(np.arange(n_cls), g.class_size)
    is_unit = np.zeros(comp.max() + 1 if len(comp) else 0, dtype=bool)
    is_unit[unit_comps] = True
    mask = is_unit[comp]
    pairs = np.unique(comp[mask].astype(np.int64) * n_cls + el_class[mask])
    comps, classes = pairs // n_cls, pairs % n_cls
    out: dict[tuple, list[int]] = {}
    if len(comps) == 0:
        return out
    starts = np.flatnonzero(np.r_[True, comps[1:] != comps[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], len(comps)]):
        out.setdefault(tuple(classes[s:e].tolist()), []).append(int(comps[s]))
    return out


def _anchor(b: "_Builder", g: DependencyGraph, classes: tuple) -> Dim:
    candidates = [d for c in classes for d in g.class_dims[c]]
    params = [d for d in candidates if d in b.sources and d.value.startswith("@")]
    pool = params or [d for d in candidates if d in b.sources] or candidates
    return min(pool, key=b.order.__getitem__)


def _groups(b: "_Builder", g: DependencyGraph, comp: np.ndarray, unit_comps: np.ndarray) -> None:
    """Units are grouped by their anchor (first producing parameter dim): one group per producer."""
    by_anchor: dict[Dim, tuple[set, list]] = {}
    for classes, comps in _footprints(g, comp, unit_comps).items():
        anchor = _anchor(b, g, classes)
        cls, members = by_anchor.setdefault(anchor, (set(), []))
        cls.update(classes)
        members.extend(comps)
    made = []
    for anchor, (classes, comps) in by_anchor.items():
        c = g.dim_class[anchor]
        lo = g.class_offset[c]
        first: dict[int, int] = {}
        for idx, k in enumerate(comp[lo:lo + g.class_size[c]].tolist()):
            first.setdefault(k, idx)
        ids = np.array([first[k] for k in comps])
        order = np.argsort(ids)
        classes = tuple(sorted(classes))
        dims = [d for cl in classes for d in g.class_dims[cl]]
        inexact = sorted({b.inexact[d] for d in dims if d in b.inexact})
        made.append((b.order[anchor], anchor, ids[order], np.array(comps)[order], classes, dims, inexact))
    made.sort(key=lambda m: m[0])
    comp_to_unit = np.full(int(comp.max()) + 1 if len(comp) else 0, -1, dtype=np.int64)
    start = 0
    for _, anchor, ids, comps, classes, dims, inexact in made:
        name = f"{anchor.value.lstrip('@')}:{anchor.axis}"
        g.groups.append(Group(name, anchor, ids, start, classes, dims, inexact))
        comp_to_unit[comps] = np.arange(start, start + len(comps))
        start += len(comps)
    g.element_unit = comp_to_unit[comp] if len(comp) else np.zeros(0, dtype=np.int64)


def _cost_terms(b: "_Builder", g: DependencyGraph) -> None:
    g._mac_terms = [(node, coef, [g.dim_class[d] for d in dims]) for node, coef, dims in b.mac_terms]
    g._param_terms = []
    parameters = {f"@{n}" for n, _ in b.gm.named_parameters(remove_duplicate=False)}
    for key, first in b.param_alias.items():
        if key != first or key not in parameters:
            continue
        shape = b.shapes[key]
        g._param_terms.append((key, [g.dim_class.get(Dim(key, a), -1) for a in range(len(shape))]))
        for a in range(len(shape)):
            if Dim(key, a) not in g.dim_class:  # parameter no node reads: constant size
                raise AssertionError(f"unregistered parameter dim {key}[{a}]")
    n_units = sum(gr.n_units for gr in g.groups)
    units = g.element_unit
    mask = units >= 0
    el_class = np.repeat(np.arange(len(g.class_size)), g.class_size)
    g._unit_counts = sp.coo_matrix((np.ones(int(mask.sum()), dtype=np.int64), (el_class[mask], units[mask])),
                                   shape=(len(g.class_size), n_units)).tocsr()


def _frozen_report(b: "_Builder", g: DependencyGraph, comp: np.ndarray) -> None:
    """For each frozen component that has a source, remember a reason (deduplicated by class set)."""
    bad = np.nonzero(g._comp_frozen & g._comp_source)[0]
    if len(bad) == 0:
        return
    n_cls = len(g.class_size)
    el_class = np.repeat(np.arange(n_cls), g.class_size)
    is_bad = np.zeros(len(g._comp_frozen), dtype=bool)
    is_bad[bad] = True
    seen: set[tuple] = set()
    pairs = np.unique(comp[is_bad[comp]].astype(np.int64) * n_cls + el_class[is_bad[comp]])
    by_comp: dict[int, list[int]] = {}
    for p in pairs.tolist():
        by_comp.setdefault(p // n_cls, []).append(p % n_cls)
    for classes in by_comp.values():
        key = tuple(classes)
        if key in seen:
            continue
        seen.add(key)
        dims = [d for c in classes for d in g.class_dims[c]]
        reason = next((b.reasons[d] for d in dims if d in b.reasons), "coupled to a frozen element")
        g.frozen.append(FrozenInfo(dims, reason))


def finalize(b: "_Builder") -> DependencyGraph:
    g = DependencyGraph(b.traced)
    g.shapes = b.shapes
    g.reasons = dict(b.reasons)
    g.param_alias = dict(b.param_alias)
    for key in b.param_alias:  # every parameter dim exists, even if no node reads it
        for axis in range(len(b.shapes[key])):
            b._register(Dim(key, axis))
    _classes(b, g)
    comp, n_comp = _components(b, g)
    unit_comps = _units(b, g, comp, n_comp)
    _groups(b, g, comp, unit_comps)
    _cost_terms(b, g)
    if b.traced.counted_macs is not None:
        # NOTE: rules model conv/linear/matmul/attention exactly; whatever torch counted beyond them belongs
        # to ops without a rule, whose tensors are frozen: a constant that every budget must include.
        g.unmodeled_macs = max(0.0, b.traced.counted_macs - g.cost().macs)
    _frozen_report(b, g, comp)
    return g

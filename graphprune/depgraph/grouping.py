"""Grouping pass: the builder's coupling state -> dim classes, prunable units and groups.

Reads the builder's union-find of identity couplings, its index-map links, frozen elements, source dims and
cost terms; writes a new ``DependencyGraph``.  Steps (each a function below):

1. ``_classes``: dims merged by identity couplings become *classes*, laid end to end as elements;
2. ``_components``: index-map links are edges on elements; connected components are coupled channel sets;
3. ``_units``: a component is a *unit* when no element is frozen and one lies in a source dim;
4. ``_groups``: units touching the same classes share an *anchor* (first producing parameter dim): one group
   per anchor, named ``<parameter>:<axis>``;
5. ``_cost_terms``: MACs and parameter terms as products of class sizes, and the class x unit count matrix;
6. ``_frozen_report``: one reason per frozen component that has a source.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from .rule_context import Dim
from .graph import DependencyGraph, FrozenInfo, Group

__all__ = ["assemble_graph"]


def _classes(b: Any, g: DependencyGraph) -> None:
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


def _components(b: Any, g: DependencyGraph) -> tuple[np.ndarray, int]:
    n = int(g.class_size.sum())
    src = [g.class_offset[g.dim_class[a]] + ia for a, ia, _, _ in b.links]
    dst = [g.class_offset[g.dim_class[c]] + ic for _, _, c, ic in b.links]
    src = np.concatenate(src) if src else np.zeros(0, dtype=np.int64)
    dst = np.concatenate(dst) if dst else np.zeros(0, dtype=np.int64)
    adj = sp.coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n)).tocsr()
    return connected_components(adj, directed=False)[::-1]


def _element_flags(b: Any, g: DependencyGraph, dims: set[Dim]) -> np.ndarray:
    flags = np.zeros(int(g.class_size.sum()), dtype=bool)
    for c in {g.dim_class[d] for d in dims if d in g.dim_class}:
        flags[g.class_offset[c]:g.class_offset[c] + g.class_size[c]] = True
    return flags


def _units(b: Any, g: DependencyGraph, comp: np.ndarray, n_comp: int) -> np.ndarray:
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


def _anchor(b: Any, g: DependencyGraph, classes: tuple) -> Dim:
    candidates = [d for c in classes for d in g.class_dims[c]]
    params = [d for d in candidates if d in b.sources and d.value.startswith("@")]
    pool = params or [d for d in candidates if d in b.sources] or candidates
    return min(pool, key=b.order.__getitem__)


def _groups(b: Any, g: DependencyGraph, comp: np.ndarray, unit_comps: np.ndarray) -> None:
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


def _cost_terms(b: Any, g: DependencyGraph) -> None:
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


def _frozen_report(b: Any, g: DependencyGraph, comp: np.ndarray) -> None:
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


def assemble_graph(b: Any) -> DependencyGraph:
    """The dependency graph from the builder's coupling state (``b``: a ``depgraph.builder._Builder``)."""
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
        g.__dict__.pop("_cost_terms", None)  # NOTE: the cached polynomial was read before its constant was known
    _frozen_report(b, g, comp)
    return g

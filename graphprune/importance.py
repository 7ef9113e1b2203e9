"""Stage 3 — importance: one score per prunable unit (coupled channel set), higher = more important.

A unit u spans slices of several tensors: for every parameter dim d of its group, the slice of the
parameter at u's indices along d (producer rows, BN scale/shift, consumer columns), and for every
activation dim, u's channels.  A criterion computes one contribution per (dim or site, unit) and
*aggregates* them over the coupled group: ``sum`` (default), ``mean`` (sum / dims touching u) or ``max``.

Criteria (the ``CRITERIA`` table; data-free and data-driven rows side by side):

* ``l1``/``l2``: ``(agg_d sum_{slice_d(u)} |w|^p)^(1/p)``;
* ``bn``: agg of |γ| over the BatchNorm/GroupNorm/LayerNorm scales in the group (Network Slimming);
* ``random``: a seeded control;
* ``taylor`` (data): first-order Taylor expansion of the loss in the *weights*.  Zeroing all of u's
  slices changes the loss by ``ΔL_u ≈ -Σ_d Σ_{slice_d(u)} w·∂L/∂w``, so per calibration batch b
  ``I_u^b = |Σ_d c_{d,u}|`` with ``c_{d,u} = Σ_{slice_d(u)} w·∂L_b/∂w`` (``mean``: divided by the
  number of dims, ``max``: ``max_d |c_{d,u}|``), averaged over batches (Molchanov et al. 2019, group
  form, absolute value instead of square).  Weights × gradients, not activations × gradients:
  it needs no hooks and covers every coupled parameter;
* ``fisher`` / ``group_fisher`` / ``group_fisher_macs`` (data): Group Fisher (Liu et al. 2021).  A gate
  g_u = 1 multiplies every activation site of u (the masked model of ``evaluate.MaskedGraph``, so g_u = 0
  *is* the removal); per sample n, ``s_{n,u} = ∂L_n/∂g_u = Σ_sites a·∂L_n/∂a`` over u's channels, and
  ``F_u = 1/(2N) Σ_n s_{n,u}²``.  ``group_fisher`` divides F_u by the share of activation *memory*
  u frees (Σ over activation dims of numel/size, the paper's normaliser), ``group_fisher_macs`` by
  the share of MACs it frees (``graph.cost`` with one unit of the group removed); plain ``fisher`` is
  unnormalised.  These are meant to be ranked across groups as they are (``strategy="global_raw"``):
  per-group normalisation would cancel the cost normaliser.

Data-driven criteria take ``calib`` (an iterable of ``(inputs, targets)`` batches) and ``loss_fn``
(``loss_fn(output, target)``, mean over the batch; cross-entropy by default).
``normalize_per_group`` rescales scores within each group (``mean``/``max``/``sum``) so groups compare in
a global ranking.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from .depgraph import DependencyGraph, Dim

__all__ = ["CRITERIA", "Criterion", "score_units", "normalize_per_group", "AGGREGATES", "taylor", "group_fisher"]

AGGREGATES = ("sum", "mean", "max")


def _param(graph: DependencyGraph, key: str) -> torch.Tensor | None:
    name = key[1:]
    try:
        return graph.traced.gm.get_parameter(name)
    except AttributeError:
        return None


def _per_element(t: torch.Tensor, axis: int, p: float) -> np.ndarray:
    """sum of |w|^p over every axis but ``axis`` (one fused reduction, no |w|^p temporary)."""
    dims = [a for a in range(t.ndim) if a != axis]
    w = t.detach().float()
    norms = torch.linalg.vector_norm(w, ord=p, dim=dims) if dims else w.abs()
    return norms.pow(p).cpu().numpy().astype(np.float64)


def _dim_units(graph: DependencyGraph, d: Dim) -> np.ndarray:
    c = graph.dim_class[d]
    lo = graph.class_offset[c]
    return graph.element_unit[lo:lo + graph.class_size[c]]


class _Aggregator:
    """Combines per-(dim, unit) contributions over a unit's coupled dims: sum, mean or max."""

    def __init__(self, n_units: int, how: str):
        if how not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {how!r}")
        self.how = how
        self.total = np.zeros(n_units)
        self.count = np.zeros(n_units)
        self.best = np.full(n_units, -np.inf)

    def add(self, units: np.ndarray, values: np.ndarray) -> None:
        ok = units >= 0
        n = len(self.total)
        contrib = np.bincount(units[ok], weights=values[ok], minlength=n)
        touched = np.bincount(units[ok], minlength=n) > 0
        self.total += contrib
        self.count += touched
        self.best = np.where(touched, np.maximum(self.best, contrib), self.best)

    def result(self) -> np.ndarray:
        if self.how == "sum":
            return self.total
        if self.how == "mean":
            return self.total / np.maximum(self.count, 1)
        return np.where(self.count > 0, self.best, 0.0)


def _accumulate(graph: DependencyGraph, dims: list[Dim], per_element: Callable, how: str = "sum") -> np.ndarray:
    """Aggregate ``per_element(tensor, axis)`` of the given parameter dims into their units."""
    agg = _Aggregator(graph.n_units, how)
    seen = set()
    for d in dims:
        key = graph.param_alias.get(d.value, d.value)
        if (key, d.axis) in seen:
            continue
        seen.add((key, d.axis))
        t = _param(graph, d.value)
        if t is None:
            continue
        agg.add(_dim_units(graph, d), per_element(t, d.axis))
    return agg.result()


def _group_dims(graph: DependencyGraph) -> list[Dim]:
    return [d for g in graph.groups for d in g.members if d.value.startswith("@")]


def magnitude(graph: DependencyGraph, p: float, aggregate: str = "sum") -> np.ndarray:
    return _accumulate(graph, _group_dims(graph), lambda t, a: _per_element(t, a, p), aggregate) ** (1.0 / p)


def bn_scale(graph: DependencyGraph, aggregate: str = "sum") -> np.ndarray:
    norm_types = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    modules = dict(graph.traced.gm.named_modules())
    dims = [d for d in _group_dims(graph) if d.value.endswith(".weight")
            and isinstance(modules.get(d.value[1:-len(".weight")]), norm_types)]
    if not dims:
        raise ValueError("importance 'bn' needs normalisation layers with affine scales; this model has none "
                         "in its prunable groups — use 'l1' or 'l2'")
    return _accumulate(graph, dims, lambda t, a: _per_element(t, a, 1.0), aggregate)


def random_scores(graph: DependencyGraph, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(graph.n_units)


# ---- data-driven criteria ----------------------------------------------------------------------
def _batches(calib: Iterable | None, n: int, name: str) -> list:
    from .evaluate import take_batches

    batches = take_batches(calib, n)
    if not batches:
        raise ValueError(f"importance {name!r} needs calibration data: pass calib=<iterable of (inputs, targets) "
                         "batches> (and loss_fn= for a non-classification loss)")
    return batches


def taylor(graph: DependencyGraph, calib: Iterable, loss_fn: Callable | None = None, aggregate: str = "sum",
           batches: int = 4) -> np.ndarray:
    """Weight × gradient Taylor importance (module docstring); the model's ``.grad`` is left untouched."""
    from .evaluate import split_batch

    loss_fn = loss_fn or F.cross_entropy
    gm = graph.traced.gm
    dims = [d for d in dict.fromkeys(_group_dims(graph)) if _param(graph, d.value) is not None]
    params = list(dict.fromkeys(_param(graph, d.value) for d in dims))
    was_training = gm.training
    gm.eval()
    total = np.zeros(graph.n_units)
    data = _batches(calib, batches, "taylor")
    try:
        for batch in data:
            inputs, target = split_batch(batch)
            grads = torch.autograd.grad(loss_fn(gm(*inputs), target), params, allow_unused=True)
            grad_of = {id(p): g for p, g in zip(params, grads)}

            def wg(t: torch.Tensor, axis: int) -> np.ndarray:
                g = grad_of.get(id(t))
                if g is None:
                    return np.zeros(t.shape[axis])
                prod = (t.detach() * g).sum(dim=[a for a in range(t.ndim) if a != axis]) if t.ndim > 1 \
                    else t.detach() * g
                prod = prod.double().numpy()
                return np.abs(prod) if aggregate == "max" else prod
            total += np.abs(_accumulate(graph, dims, wg, aggregate))
    finally:
        gm.train(was_training)
    return total / len(data)


def _memory_freed(graph: DependencyGraph) -> np.ndarray:
    """Activation elements one unit frees: Σ over activation dims d touching it of numel(d.value)/size(d)."""
    weight = np.zeros(len(graph.class_size))
    for d, c in graph.dim_class.items():
        if d.value.startswith("@") or d.value not in graph.shapes:
            continue
        shape = graph.shapes[d.value]
        weight[c] += float(np.prod(shape)) / max(shape[d.axis], 1)
    return graph._unit_counts.T @ weight


def _cost_freed(graph: DependencyGraph, metric: str) -> np.ndarray:
    """Share of the dense cost (``macs``/``params``/``memory``) that removing one unit frees."""
    if metric == "memory":
        freed = _memory_freed(graph)
        return freed / max(freed.sum(), 1.0)
    full = graph.full_keep()
    dense = getattr(graph.cost(full), metric)
    out = np.zeros(graph.n_units)
    for g in graph.groups:  # NOTE: units of a group span the same classes; one removal measures them all
        keep = full.copy()
        keep[g.first_unit] = False
        out[g.units] = (dense - getattr(graph.cost(keep), metric)) / max(dense, 1.0)
    return out


def group_fisher(graph: DependencyGraph, calib: Iterable, loss_fn: Callable | None = None, aggregate: str = "sum",
                 batches: int = 4, normalize_cost: str | None = "memory") -> np.ndarray:
    """Group Fisher importance (module docstring), optionally divided by the cost share each unit frees."""
    from .evaluate import MaskedGraph, split_batch

    loss_fn = loss_fn or F.cross_entropy
    masked = MaskedGraph(graph, sites="all")
    gm = masked.set_keep(graph.full_keep()).eval()
    fisher, count = np.zeros(graph.n_units + 1), 0
    for batch in _batches(calib, batches, "group_fisher"):
        inputs, target = split_batch(batch)
        n = int(inputs[0].shape[0])
        gates = [torch.ones(n, graph.n_units + 1, requires_grad=True) for _ in masked.sites]
        with masked.gated(gates) as gated:
            loss = loss_fn(gated(*inputs), target) * n  # NOTE: mean loss × n = Σ_n L_n: row n of ∂/∂g is ∂L_n/∂g_n
            grads = torch.autograd.grad(loss, gates, allow_unused=True)
        agg = _Aggregator(n * (graph.n_units + 1), aggregate)
        for site, g in zip(masked.sites, grads):
            if g is None:
                continue
            present = np.unique(site.index.numpy())  # the units this site carries
            rows = np.arange(n)[:, None] * (graph.n_units + 1)
            values = g[:, present].double().numpy()
            agg.add((rows + present[None, :]).ravel(), (np.abs(values) if aggregate == "max" else values).ravel())
        fisher += (agg.result().reshape(n, -1) ** 2).sum(0)
        count += n
    scores = fisher[:-1] / (2 * max(count, 1))
    if normalize_cost is not None:
        scores = scores / np.maximum(_cost_freed(graph, normalize_cost), 1e-12)
    return scores


# ---- the table -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Criterion:
    """A row of ``CRITERIA``: ``fn(graph, aggregate=..., [calib=..., loss_fn=...]) -> scores``.

    Attributes:
        fn: the scoring function.
        needs_data: True if ``fn`` takes ``calib``/``loss_fn`` (data-driven), False for weight-only criteria.
        aggregates: whether ``fn`` accepts ``aggregate`` (sum/mean/max over the coupled dims).
    """

    fn: Callable[..., np.ndarray]
    needs_data: bool = False
    aggregates: bool = True

    def __call__(self, graph: DependencyGraph, calib: Iterable | None = None, loss_fn: Callable | None = None,
                 aggregate: str = "sum", **options: Any) -> np.ndarray:
        kwargs = dict(options)
        if self.aggregates:
            kwargs["aggregate"] = aggregate
        if self.needs_data:
            kwargs.update(calib=calib, loss_fn=loss_fn)
        return self.fn(graph, **kwargs)


CRITERIA: dict[str, Criterion] = {
    "l1": Criterion(lambda g, aggregate="sum": magnitude(g, 1.0, aggregate)),
    "l2": Criterion(lambda g, aggregate="sum": magnitude(g, 2.0, aggregate)),
    "bn": Criterion(bn_scale),
    "random": Criterion(random_scores, aggregates=False),
    "taylor": Criterion(taylor, needs_data=True),
    "fisher": Criterion(lambda g, **kw: group_fisher(g, normalize_cost=None, **kw), needs_data=True),
    "group_fisher": Criterion(lambda g, **kw: group_fisher(g, normalize_cost="memory", **kw), needs_data=True),
    "group_fisher_macs": Criterion(lambda g, **kw: group_fisher(g, normalize_cost="macs", **kw), needs_data=True),
}


def score_units(graph: DependencyGraph, criterion: str | Callable = "l2", *, calib: Iterable | None = None,
                loss_fn: Callable | None = None, aggregate: str = "sum", normalize: str | None = None,
                **options: Any) -> np.ndarray:
    """Scores for every unit of ``graph`` (higher = more important).

    Args:
        criterion: a ``CRITERIA`` name or ``fn(graph) -> scores``.
        calib / loss_fn: calibration batches and loss for data-driven criteria (ignored by the others).
        aggregate: how a unit's contributions over its coupled dims combine: ``sum``, ``mean`` or ``max``.
        normalize: optionally rescale within each group (``mean``/``max``/``sum``, see ``normalize_per_group``).
        options: passed to the criterion (e.g. ``batches=8`` for data-driven ones).
    """
    if callable(criterion):
        scores = np.asarray(criterion(graph), dtype=np.float64)
    elif criterion in CRITERIA:
        scores = CRITERIA[criterion](graph, calib=calib, loss_fn=loss_fn, aggregate=aggregate, **options)
    else:
        raise ValueError(f"unknown importance {criterion!r}; choose one of {sorted(CRITERIA)} or pass a callable")
    if scores.shape != (graph.n_units,):
        raise ValueError(f"importance returned shape {scores.shape}, expected ({graph.n_units},)")
    return normalize_per_group(graph, scores, normalize) if normalize else scores


def normalize_per_group(graph: DependencyGraph, scores: np.ndarray, how: str = "mean") -> np.ndarray:
    out = scores.astype(np.float64).copy()
    for g in graph.groups:
        s = out[g.units]
        scale = {"mean": s.mean(), "max": s.max(), "sum": s.sum()}[how] if len(s) else 1.0
        out[g.units] = s / scale if scale > 0 else s
    return out

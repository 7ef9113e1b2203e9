"""The measured latency table and the latency model built on it.

Model.  Each conv/linear node ``n`` with widths ``a`` (input axis, per group) and ``b`` (output axis) is
priced as a *separable product* of its two measured sweeps::

    T_n(a, b) = T_n(full) · r_in(a) · r_out(b),    r_axis(w) = curve_axis(w) / curve_axis(full)

where ``curve_axis`` is the monotone width curve of the sweep along that axis with the other axis at full
width (``staircase.width_curve``); a frozen axis has ``r ≡ 1``.  The product is exact for time ∝ MACs
(∝ a·b) and for a staircase in one axis; it misses interactions (a GEMM tile depending on both widths),
which ``tests/latency`` and the bench measure on random (a, b) pairs.  Cost nodes without a piece
(matmul, attention, …) are priced by MACs at the pieces' own ms-per-MAC rate.

Per-call overhead.  A standalone piece pays the runtime's per-call cost (dispatch, input binding), which
the whole model pays once, not once per layer; it is measured on a 1x1 layer and subtracted from every
piece time (it would otherwise dominate small layers and flatten their curves).

Calibration.  The dense model and three pruned models (every group at 0.3, 0.5 and 0.8 of its units rounded
down to its width menu, as a prune's plan is: ``TableLatencyModel.calibration_keep``; rewritten by the rewrite
passes) are measured whole on the target, interleaved.  Standalone pieces differ from layers in
the model: they pay per-layer costs the fused graph does not (ONNX Runtime converts NCHW to its blocked
layout and back around every standalone conv, a cost that shrinks more slowly than the MACs), and the model
runs ops no piece has (pooling, adds).  Measured on ResNets with ONNX Runtime, the whole model shrinks
about like its MACs (half width: ~0.28 of dense) while the pieces' sum shrinks about linearly (~0.5).  So
predictions are a power law of the pieces' ratio::

    predict(keep) = dense_ms · (Σ_n T_n(keep) / Σ_n T_n(full)) ** gamma

with ``gamma`` piecewise: in log-log space the prediction interpolates linearly between the calibration
models' points and the dense one (each segment a power law, ``gamma`` its slope), and below the narrowest
model continues that segment's law; ``predict(full) == dense_ms`` and ``predict(calibration model) == its
ms`` exactly.  When the points are not increasing (noise) or a segment's ``gamma`` leaves [0.25, 4], one
power law fitted by least squares in log space replaces them.  Why several models, not the half one alone:
measured on an AVX2 host (``bench/results/latency_calibration.md``, ORT, 1 thread, batch 1), ResNet-18's
half model (widths 32 … 256) ran ~20 % faster than its neighbours, so one law through it was steep and
plans at 0.3-0.4 of the widths were predicted up to 30 % low.  Why menu-rounded models: the map from the
pieces' ratio to the whole model's depends on which layers shrink (MobileNetV2's menus keep small groups
whole), so the calibration models are built like the plans it will predict.  Measured on six torchvision
models, the worst error on other menu-width plans fell from 13-26 % to 7-13 %.  Power laws, not affine
maps: they stay positive and sane below the narrowest model, where an affine fit through noisy points
extrapolates to negative times.  Off-menu widths (exactly 0.6 of every group) still run 20-50 % slower than
predicted: the runtimes' blocked layouts, which standalone pieces do not see.  When no calibration model
can be built or none measures below the dense one, the dense measurement alone calibrates: the difference is
added when the pieces under-explain the dense time (overhead does not shrink with pruning), else
predictions are scaled by ``dense / Σ pieces``.  Either way removing units never increases a prediction
(each curve is monotone, and so is the map).

Piece batch.  On CPU targets a piece is timed at ``piece_batch(target)`` = min(batch, ``PIECE_BATCH``)
images and its times, less the per-call overhead, are scaled by ``batch / piece_batch``: on a CPU a layer's
time grows linearly with the batch and its width curve (the staircase of channel blocks) does not depend on
it, while timing every width of every layer at batch 32 made a first latency-budget prune of ResNet-50 take
1,303 s (``bench/results/latency_quiet_b32.md``).  The calibration above is measured whole at the target's
real batch, so what linearity misses there is absorbed by ``gamma``.  ``bench/latency_piece_batch.py``
measures the cost and the prediction error of this against pieces timed at the real batch.  GPU targets
time pieces at the real batch (a small batch does not fill the device: time is not linear in it).

Width menu.  For a group, the union over the layers it touches of each layer-axis's staircase right ends
(translated from channels to the group's units).  Why the union: with separable per-layer times, a width
that is no layer's right end has the same time as one unit more, so it is dominated; every right end of
some layer saves time over the next width up, so none is dominated.  The union is exactly the
non-dominated set.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import runners
from .cache import TimingCache
from .model import Target
from .pieces import NodePiece, PieceSpec, node_pieces
from .staircase import extend_menu, staircase, width_curve
from .sweep import PieceTiming, time_spec

__all__ = ["LatencyTable", "TableLatencyModel", "build_latency_model", "measure_table", "menu_keep",
           "piece_batch"]

GAMMA_RANGE = (0.25, 4.0)
CALIBRATION_FRACTIONS = (0.3, 0.8)  # besides the half-width model (module docstring: calibration)
PIECE_BATCH = 4  # the most images a piece is timed with on a CPU target (module docstring: piece batch)
OVERHEAD_SPEC = PieceSpec("linear", (1,), full_in=1, full_out=1)  # a 1x1 layer: the per-call cost


@dataclass
class LatencyTable:
    """Everything measured for one graph on one target.

    Attributes:
        pieces: the graph's conv/linear nodes as pieces; timings: their specs' sweeps by ``spec.key``.
        macs_nodes: cost nodes without a piece (priced by MACs).
        dense_ms: the whole model measured once.
        half_ms: the model with every group at half width (rounded to its menu), measured with it (None: not
            available).
        fraction_ms: ``{fraction: ms}`` of the other calibration models measured with it (may be empty).
        overhead_ms: time of one call of a 1x1 layer on the target (the runtime's per-call cost, which
            every standalone piece pays once but the whole model pays once in total); subtracted from
            every piece time.
        measured, reused: piece specs timed now / read from the cache; seconds: build wall time.
        piece_batch: the batch the pieces were timed at (their times are scaled by
            ``target.batch / piece_batch``; see the module docstring).
    """

    target: Target
    pieces: list[NodePiece]
    timings: dict[str, PieceTiming]
    macs_nodes: list[str]
    dense_ms: float
    overhead_ms: float = 0.0
    half_ms: float | None = None
    fraction_ms: dict[float, float] = field(default_factory=dict)
    measured: int = 0
    reused: int = 0
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    piece_batch: int | None = None

    @property
    def piece_scale(self) -> float:
        """Factor from piece times (at ``piece_batch``) to times at the target's batch."""
        return self.target.batch / self.piece_batch if self.piece_batch else 1.0


def piece_batch(target: Target) -> int:
    """Batch the pieces of ``target`` are timed at: ``min(batch, PIECE_BATCH)`` on CPU, the batch on GPU."""
    return target.batch if target.runtime == "torch-cuda" else min(target.batch, PIECE_BATCH)


def _model_key(graph) -> str:
    text = graph.traced.gm.code + repr(sorted(graph.shapes.items()))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def measure_table(graph, target: Target = Target(), *, cache_dir: str | Path | None | bool = None,
                  progress: bool = True) -> LatencyTable:
    """Time every distinct piece of ``graph`` and the dense model on ``target``, reusing the disk cache."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    cache = TimingCache.open(target, cache_dir)
    batch = piece_batch(target)
    pieces, macs_nodes = node_pieces(graph, batch)
    specs = {p.spec.key: p.spec for p in pieces}
    specs[OVERHEAD_SPEC.key] = OVERHEAD_SPEC
    missing = [k for k in specs if k not in cache.pieces]
    for key in tqdm(missing, desc=f"latency table ({target.key})", disable=not progress or not missing):
        cache.pieces[key] = time_spec(specs[key], target).to_json()
        cache.save()  # NOTE: after every piece, so an interrupted build keeps what it measured
    model_key = _model_key(graph)
    timings = {k: PieceTiming.from_json(cache.pieces[k]) for k in specs}
    overhead = timings[OVERHEAD_SPEC.key].full_ms
    entry = cache.dense.get(model_key)
    if not isinstance(entry, dict) or entry.get("keeps") != "menu":  # NOTE: older entries: other models measured
        uncalibrated = TableLatencyModel(graph, target, LatencyTable(target, pieces, timings, macs_nodes, 1.0, overhead,
                                                                     piece_batch=batch))
        entry = cache.dense[model_key] = _measure_calibration(graph, target, uncalibrated.calibration_keep)
        cache.save()
    fractions = {float(f): float(ms) for f, ms in entry.get("fractions", {}).items() if ms is not None}
    return LatencyTable(target, pieces, timings, macs_nodes, float(entry["dense"]), overhead, entry["half"],
                        fraction_ms=fractions,
                        measured=len(missing), reused=len(specs) - len(missing),
                        seconds=time.perf_counter() - start, piece_batch=batch)


def menu_keep(graph, fraction: float, width_menu) -> np.ndarray:
    """Every group keeping the widest width of its menu (``width_menu(group index)``) at or below ``fraction`` of its
    units (its narrowest when none is), as a plan with measured widths would."""
    keep = graph.full_keep()
    for i, g in enumerate(graph.groups):
        count, menu = max(1, round(fraction * g.n_units)), np.asarray(width_menu(i))
        count = int(menu[menu <= count][-1]) if (menu <= count).any() else int(menu[0])
        keep[g.units] = np.arange(g.n_units) < count
    return keep


def _measure_calibration(graph, target: Target, keep_at) -> dict:
    """``{"dense": ms, "half": ms or None, "fractions": {fraction: ms or None}, "keeps": "menu"}``: the dense model
    and the ``keep_at(fraction)`` models, measured interleaved."""
    from ..passes import RewriteError, rewrite  # NOTE: only to build the calibration models; lazy, one way

    modules, names = [graph.traced.gm], ["dense"]
    for fraction in (0.5, *CALIBRATION_FRACTIONS) if graph.n_units else ():
        try:
            modules.append(rewrite(graph, keep_at(fraction)))
            names.append(fraction)
        except RewriteError:
            pass  # calibrated on the models that could be built
    times = dict(zip(names, runners.measure_ms(modules, graph.traced.example_inputs, target)))
    return {"dense": times["dense"], "half": times.get(0.5),
            "fractions": {str(f): times.get(f) for f in CALIBRATION_FRACTIONS}, "keeps": "menu"}


class TableLatencyModel:
    """:class:`~graphprune.latency.LatencyModel` from a measured table (see module docstring)."""

    def __init__(self, graph, target: Target, table: LatencyTable):
        self.graph, self.target, self.table = graph, target, table
        self._menus: dict[int, np.ndarray] = {}
        self._compile_pieces()
        self._compile_macs_terms()
        self.dense_ms = float(table.dense_ms)
        self._calibrate()

    def _calibrate(self) -> None:
        """``gamma`` (power law) or ``offset`` / ``scale`` (one measurement) of the map to ms (module docstring)."""
        raw = self._raw_ms(self.graph.class_sizes(self.graph.full_keep()))
        dense, half = self.dense_ms, self.table.half_ms
        self.raw_full, self.gamma, self.knots = raw, None, None
        self.offset, self.scale = (dense - raw, 1.0) if dense >= raw else (0.0, dense / raw if raw > 0 else 1.0)
        if raw <= 0:
            return
        measured = [(self.calibration_keep(0.5), half)] if half is not None else []
        measured += [(self.calibration_keep(f), ms) for f, ms in sorted(self.table.fraction_ms.items())]
        points = []  # (log x, log y): x the pieces' ratio, y the measured ratio, both in (0, 1)
        for keep, ms in measured:
            raw_k = self._raw_ms(self.graph.class_sizes(keep))
            if 0 < raw_k < raw and 0 < ms < dense:
                points.append((np.log(raw_k / raw), np.log(ms / dense)))
        if points:
            lx, ly = np.array(sorted(points)).T
            self.gamma = float(np.clip((lx @ ly) / (lx @ lx), GAMMA_RANGE[0], GAMMA_RANGE[1]))
            knots_x, knots_y = np.append(lx, 0.0), np.append(ly, 0.0)  # the dense model: log 1 = 0
            slopes = np.diff(knots_y) / np.maximum(np.diff(knots_x), 1e-12)
            if np.all(np.diff(knots_x) > 0) and np.all((slopes >= GAMMA_RANGE[0]) & (slopes <= GAMMA_RANGE[1])):
                self.knots = (knots_x, knots_y, float(slopes[0]))
            # NOTE: otherwise (noise put a narrower model above a wider one) the least-squares law alone

    def _compile_pieces(self) -> None:
        """Flat arrays: each node's full ms and where its two normalised curves start in ``self._curves``."""
        curves, starts, classes, full_ms = [], [], [], []
        offset, overhead, scale = 0, self.table.overhead_ms, self.table.piece_scale
        for p in self.table.pieces:
            timing = self.table.timings[p.spec.key]
            full_ms.append(max(timing.full_ms - overhead, 0.0) * scale)
            for axis, cls in (("in", p.in_class), ("out", p.out_class)):
                full = p.spec.full(axis)
                if axis in timing.sweeps:
                    s = timing.sweeps[axis]
                    curve = width_curve(s.widths, np.maximum(np.asarray(s.ms) - overhead, 0.0), full, s.step)
                    curve = curve / curve[full] if curve[full] > 0 else np.ones(full + 1)
                else:
                    curve = np.ones(full + 1)
                curves.append(curve)
                starts.append(offset)
                classes.append(cls)
                offset += full + 1
        self._curves = np.concatenate(curves) if curves else np.zeros(0)
        self._starts = np.array(starts, dtype=np.int64).reshape(-1, 2)
        self._classes = np.array(classes, dtype=np.int64).reshape(-1, 2)
        self._full_ms = np.array(full_ms, dtype=np.float64)

    def _compile_macs_terms(self) -> None:
        """Cost terms of nodes without a piece, priced at the pieces' ms per MAC."""
        names = set(self.table.macs_nodes)
        piece_nodes = {p.node for p in self.table.pieces}
        sizes = self.graph.class_size.astype(np.float64)
        piece_macs = sum(c * np.prod(sizes[i]) for n, c, i in self.graph._mac_terms if n in piece_nodes)
        terms = [(c, i) for n, c, i in self.graph._mac_terms if n in names]
        width = max((len(i) for _, i in terms), default=0)
        self._macs_index = np.full((len(terms), width), len(sizes), dtype=np.int64)
        for row, (_, idx) in enumerate(terms):
            self._macs_index[row, :len(idx)] = idx
        self._macs_coef = np.array([c for c, _ in terms], dtype=np.float64)
        if piece_macs > 0:
            self._ms_per_mac = float(self._full_ms.sum()) / piece_macs
        else:  # no pieces at all: the whole dense time is spread over the MACs
            total = float((self._macs_coef * np.append(sizes, 1.0)[self._macs_index].prod(axis=1)).sum())
            self._ms_per_mac = self.table.dense_ms / total if total > 0 else 0.0

    def _raw_ms(self, sizes: np.ndarray) -> float:
        ms = 0.0
        if len(self._full_ms):
            ratio = self._curves[self._starts + sizes[self._classes]].prod(axis=1)
            ms += float(self._full_ms @ ratio)
        if len(self._macs_coef):
            padded = np.append(sizes.astype(np.float64), 1.0)
            ms += self._ms_per_mac * float(self._macs_coef @ padded[self._macs_index].prod(axis=1))
        return ms

    def predict_ms(self, keep: np.ndarray) -> float:
        """Predicted ms of the model pruned to ``keep``."""
        raw = self._raw_ms(self.graph.class_sizes(np.asarray(keep, dtype=bool)))
        if self.knots is not None and raw > 0:
            knots_x, knots_y, first_slope = self.knots
            lx = np.log(raw / self.raw_full)
            ly = np.interp(lx, knots_x, knots_y) if lx >= knots_x[0] else knots_y[0] + first_slope * (lx - knots_x[0])
            return self.dense_ms * float(np.exp(ly))
        if self.gamma is not None:
            return self.dense_ms * (raw / self.raw_full) ** self.gamma
        return self.offset + self.scale * raw

    def calibration_keep(self, fraction: float) -> np.ndarray:
        """The calibration model at ``fraction``: every group at that fraction, rounded down to its width menu."""
        return menu_keep(self.graph, fraction, self.width_menu)

    def width_menu(self, group_index: int) -> np.ndarray:
        """Kept-unit counts at the right end of a latency step of some layer of the group (module docstring)."""
        if group_index not in self._menus:
            self._menus[group_index] = self._menu(group_index)
        return self._menus[group_index]

    def _menu(self, group_index: int) -> np.ndarray:
        g = self.graph.groups[group_index]
        n = g.n_units
        keep = self.graph.full_keep()
        keep[g.units] = False
        base = self.graph.class_sizes(keep)
        counts = [np.array([n])]
        for p in self.table.pieces:
            timing = self.table.timings[p.spec.key]
            for axis, cls in (("in", p.in_class), ("out", p.out_class)):
                if axis not in timing.sweeps or cls not in g.classes:
                    continue
                per_unit = (self.graph.class_size[cls] - base[cls]) / n
                if per_unit <= 0:
                    continue
                s = timing.sweeps[axis]
                w, ms, se = s.fine()
                ms = np.maximum(ms - self.table.overhead_ms, 0.0)
                ends = extend_menu(staircase(w, ms, noise=se), s.fine_low, s.step)
                counts.append(np.floor((ends - base[cls]) / per_unit + 1e-9).astype(np.int64))
        menu = np.unique(np.concatenate(counts))
        menu = menu[(menu >= 1) & (menu <= n)]
        return menu if len(counts) > 1 else np.arange(1, n + 1)

    def measure_ms(self, modules: Sequence[torch.nn.Module], example_inputs: Any) -> list[float]:
        """End-to-end median ms of each module on this model's target, interleaved."""
        return runners.measure_ms(modules, example_inputs, self.target)


def build_latency_model(graph, target: Target = Target(), *, cache_dir: str | Path | None | bool = None,
                        progress: bool = True) -> TableLatencyModel:
    """Measure (or read from the cache) the latency table of ``graph`` on ``target`` and wrap it as a model.

    Args:
        graph: the dependency graph (its traced module is measured whole for ``dense_ms``).
        target: runtime, threads, batch and precision to measure on.
        cache_dir: folder of the timing cache (default ``cache.default_cache_dir()``); ``False``: no cache.
        progress: a tqdm bar over the pieces being timed.
    """
    return TableLatencyModel(graph, target, measure_table(graph, target, cache_dir=cache_dir, progress=progress))

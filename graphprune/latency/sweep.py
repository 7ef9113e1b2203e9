"""Width sweeps: time one piece spec on a grid of widths along each of its prunable axes.

Grid, per prunable axis (the other axis stays at full width):

1. *fine*: ``FINE_POINTS`` widths ``full, full - s, full - 2s, …`` with a step ``s`` of 1, 2, 4 or 8
   (:func:`fine_step`, by width): where pruning lands, and where the staircase is resolved;
2. *coarse*: ``COARSE_POINTS`` widths spread evenly below the fine region, rounded to multiples of ``s``:
   enough to price deep pruning by interpolation.

Every candidate of a spec (both sweeps; the full-width point is shared) is prepared first, then timed in
one interleaved batch (``runners.time_interleaved_stats``), so the points of a sweep are compared under the same
machine conditions.  A session is now and then ~3x slow for its whole life (seen with ONNX Runtime in a
VM on a shared CPU): the full width, which normalises every curve, runs in ``FULL_SESSIONS`` sessions and
keeps its fastest median; a narrower candidate that is slow only raises a sample the lower envelope
ignores (``staircase.lower_envelope``), and one over ``OUTLIER`` times a wider one is timed again.
Candidates with large weights are split into batches of at most ``BATCH_BYTES``.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import runners
from .model import Target
from .pieces import PieceSpec, onnx_piece, piece_inputs, torch_piece

__all__ = ["AxisSweep", "PieceTiming", "fine_step", "sweep_widths", "time_spec", "time_widths"]

FINE_POINTS = 10
COARSE_POINTS = 4
FULL_SESSIONS = 3
BATCH_BYTES = 256 << 20
OUTLIER = 2.0  # slow sessions run ~4x; a 1.3-1.5x penalty for unaligned widths is real (kept)


def fine_step(full: int) -> int:
    """Sampling step near full width: 1 up to 16 channels, 2 up to 64, 4 up to 256, 8 above."""
    return 1 if full <= 16 else 2 if full <= 64 else 4 if full <= 256 else 8


def sweep_widths(full: int) -> tuple[np.ndarray, int, int]:
    """(ascending widths to time, fine step, lowest fine width) for an axis of width ``full``."""
    step = fine_step(full)
    fine = full - step * np.arange(FINE_POINTS)
    fine = fine[fine >= 1]
    low = int(fine.min())
    coarse = np.round(np.linspace(0, low, COARSE_POINTS + 2)[1:-1] / step) * step
    coarse = coarse[(coarse >= 1) & (coarse < low)].astype(np.int64)
    return np.unique(np.concatenate([fine, coarse])).astype(np.int64), step, low


@dataclass
class AxisSweep:
    """Times of a piece along one axis (the other at full width)."""

    widths: list[int]
    ms: list[float]
    se: list[float]  # standard error of each median, from its repeats
    step: int
    fine_low: int

    def fine(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The finely sampled part (widths >= ``fine_low``): widths, ms, standard errors."""
        w = np.asarray(self.widths)
        at = w >= self.fine_low
        return w[at], np.asarray(self.ms)[at], np.asarray(self.se)[at]


@dataclass
class PieceTiming:
    """A piece spec's measured time at full width and its sweeps by axis (``"in"``, ``"out"``)."""

    full_ms: float
    sweeps: dict[str, AxisSweep]

    def to_json(self) -> dict[str, Any]:
        return {"full_ms": self.full_ms, "sweeps": {a: vars(s) for a, s in self.sweeps.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PieceTiming":
        return cls(float(data["full_ms"]), {a: AxisSweep(**s) for a, s in data["sweeps"].items()})


def _bytes(spec: PieceSpec, w_in: int, w_out: int) -> int:
    c_in, c_out, groups = spec.layer(w_in, w_out)
    lead = int(np.prod(spec.lead)) * int(np.prod(spec.spatial or (1,)))
    return 4 * (c_out * (c_in // groups) * int(np.prod(spec.kernel or (1,))) + lead * (c_in + c_out))


def _prepare(spec: PieceSpec, w_in: int, w_out: int, target: Target, workdir: str) -> runners.PreparedCall:
    x = piece_inputs(spec, w_in, w_out)
    if target.runtime in ("ort-cpu", "openvino-cpu"):
        return runners.prepare_onnx(onnx_piece(spec, w_in, w_out), [x], target, workdir)
    return runners.prepare_torch(torch_piece(spec, w_in, w_out), [torch.from_numpy(x)], target)


def time_widths(spec: PieceSpec, pairs: list[tuple[int, int]], target: Target, sessions: int = 1
                ) -> tuple[list[float], list[float]]:
    """Median ms (and standard errors) of the piece at each ``(w_in, w_out)``, interleaved in batches of
    bounded memory; with ``sessions`` > 1, the fastest median of that many sessions per pair."""
    medians: list[float] = []
    errors: list[float] = []
    with tempfile.TemporaryDirectory(prefix="graphprune-pieces-") as tmp:
        start = 0
        while start < len(pairs):
            end, size = start, 0
            while end < len(pairs) and (end == start or size + _bytes(spec, *pairs[end]) <= BATCH_BYTES):
                size += _bytes(spec, *pairs[end])
                end += 1
            chunk = pairs[start:end]
            calls = [_prepare(spec, a, b, target, tmp) for _ in range(sessions) for a, b in chunk]
            got = runners.fastest_session(*runners.time_interleaved_stats(calls, target), sessions)
            medians, errors = medians + got[0], errors + got[1]
            del calls
            start = end
    return medians, errors


def _axis_keys(spec: PieceSpec, axis: str, widths) -> list[tuple[int, int]]:
    return [(int(w), spec.full_out) if axis == "in" else (spec.full_in, int(w)) for w in widths]


def _retime_outliers(spec: PieceSpec, grids: dict, times: dict, se: dict, target: Target) -> None:
    """Time again, in fresh sessions, the pairs slower than ``OUTLIER`` × some wider pair of their sweep.

    NOTE: a session is now and then several times slower for its whole life (seen with ONNX Runtime on a
    shared CPU), and a narrower layer is never truly slower than a wider one by that much; the pair keeps
    the faster of its two medians.
    """
    suspects = set()
    for axis, (widths, _, _) in grids.items():
        keys = _axis_keys(spec, axis, widths)
        ms = np.array([times[k] for k in keys])
        wider_min = np.minimum.accumulate(ms[::-1])[::-1]  # fastest time at this width or wider
        suspects |= {keys[i] for i in range(len(keys) - 1) if ms[i] > OUTLIER * wider_min[i + 1]}
    if (spec.full_in, spec.full_out) in times and any(times[k] * OUTLIER < times[(spec.full_in, spec.full_out)]
                                                      for k in times):
        suspects.add((spec.full_in, spec.full_out))
    if not suspects:
        return
    suspects = sorted(suspects)
    again, again_se = time_widths(spec, suspects, target)
    for k, ms, e in zip(suspects, again, again_se):
        if ms < times[k]:
            times[k], se[k] = ms, e


def time_spec(spec: PieceSpec, target: Target) -> PieceTiming:
    """Sweep every prunable axis of ``spec`` on ``target`` (see module docstring)."""
    full = (spec.full_in, spec.full_out)
    pairs: list[tuple[int, int]] = [full] * FULL_SESSIONS
    grids = {}
    for axis in spec.prunable:
        widths, step, low = sweep_widths(spec.full(axis))
        grids[axis] = (widths, step, low)
        pairs += [(int(w), spec.full_out) if axis == "in" else (spec.full_in, int(w))
                  for w in widths if w != spec.full(axis)]
    medians, errors = time_widths(spec, pairs, target)
    best = int(np.argmin(medians[:FULL_SESSIONS]))  # the full width normalises every curve: its fastest session
    times, se = dict(zip(pairs[FULL_SESSIONS:], medians[FULL_SESSIONS:])), dict(zip(pairs[FULL_SESSIONS:],
                                                                                    errors[FULL_SESSIONS:]))
    times[full], se[full] = medians[best], errors[best]
    _retime_outliers(spec, grids, times, se, target)
    sweeps = {}
    for axis, (widths, step, low) in grids.items():
        keys = _axis_keys(spec, axis, widths)
        sweeps[axis] = AxisSweep([int(w) for w in widths], [times[k] for k in keys], [se[k] for k in keys],
                                 step, low)
    return PieceTiming(times[full], sweeps)

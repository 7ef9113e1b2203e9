"""Latency staircases: where a layer's time jumps as its width grows, and the width curve between samples.

Hardware runs channels in blocks (SIMD lanes, GEMM tiles), so a layer's time as a function of one width is
a staircase: flat over a block, a jump into the next.  The width worth keeping is the *right end* of each
step — the widest width before a jump: one channel more costs a jump, one fewer saves nothing.

Detection (:func:`staircase`), robust to timing noise:

1. The noise floor is the larger of the timings' own standard error (from their repeats, when given) and
   the robust spread of the samples above their lower envelope.
2. Samples are replaced by their lower envelope (:func:`lower_envelope`: noise only adds time).
3. Walking up the widths, the current step's level is the median of its samples so far; a sample starts
   a new step when it, and the sample after it (so one outlier is not a step), exceed that level by more
   than both ``rel`` times the level and ``k`` times the noise of that difference.  Point by point, this
   needs jumps of about ``2k`` noise floors to be found reliably; interleaved medians keep the noise low.
4. The sample before each new step is a right end; the widest sample always is.

:func:`width_curve` turns a sweep into a monotone curve over every integer width 0..full, used by the
latency table: the lower envelope at measured widths, the next measured width's time in the finely
sampled region (a staircase is flat up to its right end), linear interpolation between coarse samples.
"""
from __future__ import annotations

import numpy as np

__all__ = ["monotone_fit", "lower_envelope", "staircase", "width_curve", "extend_menu"]

REL_JUMP = 0.02
NOISE_K = 3.0


def monotone_fit(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares non-decreasing fit of ``values`` (pool adjacent violators)."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    means, sizes, counts = [], [], []
    for v, w in zip(values, weights):
        means.append(v)
        sizes.append(w)
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, s2, c2 = means.pop(), sizes.pop(), counts.pop()
            total = sizes[-1] + s2
            means[-1] = (means[-1] * sizes[-1] + m2 * s2) / total
            sizes[-1], counts[-1] = total, counts[-1] + c2
    return np.repeat(means, counts)


def lower_envelope(times) -> np.ndarray:
    """Each time replaced by the fastest time at its width or any wider one (non-decreasing).

    NOTE: timing noise is one-sided — preemption, a slow session, a cold cache only ever add time — and
    a narrower layer is not slower than a wider one, so a sample above a wider one is noise.  Unlike a
    least-squares monotone fit, the envelope does not let one slow sample raise its neighbours.
    """
    times = np.asarray(times, dtype=np.float64)
    return np.minimum.accumulate(times[::-1])[::-1]


def staircase(widths, times, noise=None, rel: float = REL_JUMP, k: float = NOISE_K) -> np.ndarray:
    """Right ends of the latency steps of ``times`` sampled at ``widths`` (see module docstring).

    Args:
        widths: sampled widths (any order, distinct).
        times: time at each width.
        noise: standard error of each time (scalar or per sample), e.g. from the timing repeats; at least
            the spread estimated from the samples themselves is used.
        rel: smallest jump that counts, relative to the step's level.
        k: smallest jump that counts, in units of the noise floor.

    Returns:
        Ascending widths, each the widest of its step; the widest sample is always one.
    """
    widths, times = np.asarray(widths), np.asarray(times, dtype=np.float64)
    if widths.shape != times.shape or widths.ndim != 1 or len(widths) == 0:
        raise ValueError(f"staircase needs equal-length 1-D widths and times, got {widths.shape}, {times.shape}")
    order = np.argsort(widths)
    floor = np.broadcast_to(np.asarray(0.0 if noise is None else noise, dtype=np.float64), times.shape)
    noise = np.maximum(floor[order], _noise(times[order]))
    widths, times = widths[order], lower_envelope(times[order])
    ends, start = [], 0
    for i in range(1, len(times)):
        level = float(np.median(times[start:i]))
        # NOTE: the level is a median of i - start samples, so the rise's spread is √(1 + 1/m) samples'
        threshold = max(rel * level, k * float(noise[i]) * np.sqrt(1.0 + 1.0 / (i - start)))
        confirmed = i == len(times) - 1 or times[i + 1] - level > threshold
        if times[i] - level > threshold and confirmed:
            ends.append(widths[i - 1])
            start = i
    return np.array(ends + [widths[-1]], dtype=np.int64)


def _noise(times: np.ndarray) -> float:
    """Noise floor seen in the samples: robust spread (1.4826 · median) of their excess over the envelope.

    NOTE: the median ignores the few slow samples; it underestimates symmetric noise, which errs toward
    more right ends (a finer menu), never toward merging real steps.  Timings pass their spread as well.
    """
    return 1.4826 * float(np.median(times - lower_envelope(times)))


def width_curve(widths, times, full: int, fine_step: int) -> np.ndarray:
    """Monotone time at every width ``0..full`` from a sweep (see module docstring); time 0 at width 0."""
    widths = np.asarray(widths, dtype=np.int64)
    order = np.argsort(widths)
    widths, fit = widths[order], lower_envelope(np.asarray(times, dtype=np.float64)[order])
    xs = np.concatenate([[0], widths])
    ys = np.concatenate([[0.0], fit])
    grid = np.arange(full + 1)
    curve = np.interp(grid, xs, ys)
    nxt = np.searchsorted(xs, grid, side="left")  # first sample at or above each width
    nxt = np.minimum(nxt, len(xs) - 1)
    prev = np.maximum(nxt - 1, 0)
    fine = (xs[nxt] - xs[prev]) <= fine_step
    curve[fine] = ys[nxt][fine]
    return np.maximum.accumulate(curve)


def extend_menu(right_ends: np.ndarray, fine_low: int, fine_step: int) -> np.ndarray:
    """Right ends found in the finely sampled region, continued below it with the staircase's period.

    The widest width is a right end by definition, so the period is read from the others (the detected
    ones): their most common gap with two or more, the largest power of two dividing the only one (blocks
    are powers of two and end on multiples of themselves), else the sampling step (no jump seen).  The
    menu continues from the lowest right end, only below ``fine_low`` (inside the fine region the samples
    already decided).
    """
    ends = np.unique(np.asarray(right_ends, dtype=np.int64))
    detected = ends[:-1]
    if len(detected) >= 2:
        values, counts = np.unique(np.diff(detected), return_counts=True)
        period = int(values[np.argmax(counts)])
    elif len(detected) == 1:
        period = int(detected[0] & -detected[0])
    else:
        period = int(fine_step)
    below = np.arange(int(ends.min()) - period, 0, -period)
    return np.unique(np.concatenate([ends, below[below < fine_low]]))

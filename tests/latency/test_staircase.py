"""Staircase detection and width curves on synthetic timings."""
import numpy as np
import pytest

from graphprune.latency.staircase import extend_menu, monotone_fit, staircase, width_curve


def _steps(widths, block, noise, seed):
    clean = 1.0 + 0.5 * np.ceil(widths / block)
    return clean, clean * (1 + noise * np.random.default_rng(seed).standard_normal(len(widths)))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("block,grid", [(8, 1), (8, 2), (8, 4), (16, 4)])
@pytest.mark.parametrize("known_noise", [True, False])
def test_noisy_steps_give_the_block_multiples(block, grid, seed, known_noise):
    widths = np.arange(grid, 129, grid)
    clean, times = _steps(widths, block, noise=0.003, seed=seed)  # the top jump is ~18 sigma
    got = staircase(widths, times, noise=0.003 * clean if known_noise else None)
    assert got.tolist() == list(range(block, 129, block))


def test_a_single_outlier_is_not_a_step():
    widths = np.arange(1, 65)
    times = 1.0 + 0.5 * np.ceil(widths / 16)
    times[20] *= 1.2
    assert staircase(widths, times, noise=0.001).tolist() == [16, 32, 48, 64]


def test_flat_timings_have_only_the_full_width():
    widths = np.arange(1, 65)
    times = 3.0 * (1 + 0.01 * np.random.default_rng(1).standard_normal(64))
    assert staircase(widths, times).tolist() == [64]


def test_linear_timings_make_every_sample_a_right_end():
    widths = np.arange(4, 65, 4)
    assert staircase(widths, 10.0 + widths).tolist() == widths.tolist()


def test_unsorted_input_and_bad_shapes():
    widths = np.array([16, 8, 24, 32])
    assert staircase(widths, np.ceil(widths / 16.0)).tolist() == [16, 32]
    with pytest.raises(ValueError, match="equal-length"):
        staircase([1, 2], [1.0])


def test_monotone_fit_is_the_pooled_least_squares_fit():
    assert monotone_fit([1.0, 3.0, 2.0, 4.0]).tolist() == [1.0, 2.5, 2.5, 4.0]
    fit = monotone_fit(np.random.default_rng(0).standard_normal(50))
    assert np.all(np.diff(fit) >= 0)


def test_width_curve_is_monotone_exact_at_samples_and_flat_up_to_the_next_fine_sample():
    widths = np.array([4, 8, 24, 28, 32])
    times = np.array([1.0, 2.0, 5.0, 5.0, 6.0])
    curve = width_curve(widths, times, full=32, fine_step=4)
    assert curve[0] == 0 and np.all(np.diff(curve) >= 0)
    assert curve[widths].tolist() == times.tolist()
    assert curve[29] == 6.0 and curve[25] == 5.0  # fine region: the next sample's time (a step's right end)
    assert 2.0 < curve[16] < 5.0  # coarse gap: interpolated


def test_extend_menu_continues_with_the_most_common_gap_below_the_fine_region():
    ends = np.array([96, 104, 112, 120, 128])
    assert extend_menu(ends, fine_low=90, fine_step=4).tolist() == list(range(8, 129, 8))
    assert extend_menu(np.array([64]), fine_low=50, fine_step=2).tolist()[-3:] == [46, 48, 64]  # flat
    assert extend_menu(np.array([48, 60]), fine_low=40, fine_step=2).tolist() == [16, 32, 48, 60]


def test_a_slow_sample_does_not_raise_the_curve_or_hide_a_step():
    widths = np.arange(4, 65, 4)
    clean = 1.0 + np.ceil(widths / 16)
    times = clean.copy()
    times[[5, 14]] *= 4  # two slow sessions (width 24 and 60)
    curve = width_curve(widths, times, full=64, fine_step=4)
    assert curve[64] == clean[-1] and curve[24] == clean[5] and curve[60] == clean[14]
    assert staircase(widths, times, noise=0.01).tolist() == [16, 32, 48, 64]

"""The shared fake latency model: exact staircases, menus and measurement consistent with prediction."""
import numpy as np

from graphprune.latency import FakeLatencyModel, LatencyModel
from graphprune.passes import rewrite
from graphprune.testing import random_keep


def test_fake_is_a_latency_model_with_dense_time_at_full_keep(tiny):
    _, _, graph = tiny
    fake = FakeLatencyModel(graph, step=8, overhead_ms=0.5)
    assert isinstance(fake, LatencyModel)
    assert fake.predict_ms(graph.full_keep()) == fake.dense_ms > 0.5


def test_fake_time_is_a_staircase_in_each_group(tiny):
    _, _, graph = tiny
    fake = FakeLatencyModel(graph, step=8)
    g = graph.group("stem.weight:0")
    # the grouped conv (2 groups of 12) reads channels j and j+12 through one weight column: one unit is
    # 2 stem channels, so a block of 8 channels is 4 units
    assert g.n_units == 12
    keep = graph.full_keep()
    times = []
    for k in range(1, g.n_units + 1):
        keep[g.units] = np.arange(g.n_units) < k
        times.append(fake.predict_ms(keep))
    jumps = np.nonzero(np.diff(times))[0] + 1  # k where time rises from k to k+1
    assert jumps.tolist() == [4, 8]
    assert fake.width_menu(graph.groups.index(g)).tolist() == [4, 8, 12]


def test_fake_measure_matches_predict_on_the_pruned_module(tiny):
    _, x, graph = tiny
    fake = FakeLatencyModel(graph, step=4, overhead_ms=0.1)
    keep = random_keep(graph, np.random.default_rng(0), 0.6)
    got = fake.measure_ms([rewrite(graph, keep)], x)[0]
    assert np.isclose(got, fake.predict_ms(keep))


def test_fraction_keep_rounds_down_to_each_groups_menu(tiny):
    from graphprune.testing import fraction_keep

    _, _, graph = tiny
    fake = FakeLatencyModel(graph, step=8)
    exact, on_menu = fraction_keep(graph, 0.6), fraction_keep(graph, 0.6, fake)
    ratios = np.linspace(0.2, 1.0, len(graph.groups))
    per_group = fraction_keep(graph, ratios)
    for i, g in enumerate(graph.groups):
        want, menu = max(1, round(0.6 * g.n_units)), fake.width_menu(i)
        assert exact[g.units].tolist() == [u < want for u in range(g.n_units)]  # the first units, in order
        kept = int(on_menu[g.units].sum())
        assert kept in menu and (kept <= want or kept == menu[0]) and not any(want >= m > kept for m in menu)
        assert per_group[g.units].sum() == max(1, round(ratios[i] * g.n_units))

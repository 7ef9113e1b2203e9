"""Time-effective menus: a group whose cut frees MACs but no measured time is not pruned (fake latency)."""
import numpy as np

import graphprune
from graphprune import Budget
from graphprune.importance import score_units
from graphprune.search import AllocationConfig, allocate
from graphprune.search.menus import width_menus
from graphprune.search.time_menus import freed_rates, time_effective_menus

from latency_fake import X, FakeLatency, _padded_ns, convnet


class FlatGroupLatency(FakeLatency):
    """The fake table, except that group ``flat`` is priced at full width whatever it keeps (its layers'
    time does not drop, like a grouped conv narrowed within its groups)."""

    def __init__(self, graph, flat: int):
        self.flat_classes = list(graph.groups[flat].classes)
        super().__init__(graph)

    def predict_ms(self, keep):
        sizes = self.graph.class_sizes(keep).astype(np.float64)
        sizes[self.flat_classes] = self.graph.class_size[self.flat_classes]
        return 1e-6 * _padded_ns(self.graph, sizes)


def _kept(graph, keep):
    return [int(keep[g.units].sum()) for g in graph.groups]


def test_group_whose_time_does_not_drop_is_kept_whole():
    graph = graphprune.inspect(convnet(), X)
    assert len(graph.groups) == 3
    latency = FlatGroupLatency(graph, flat=1)
    scores = score_units(graph, "l2")
    rates = freed_rates(graph, width_menus(np.array([g.n_units for g in graph.groups]), "auto", latency), latency)
    assert np.all(rates[1][np.isfinite(rates[1])] == 0) and np.all(rates[0][np.isfinite(rates[0])] > 0.5)
    aware = allocate(graph, scores, Budget.macs(0.5), "global", AllocationConfig(latency=latency))
    blind = allocate(graph, scores, Budget.macs(0.5), "global", AllocationConfig(round_to=8))
    n = [g.n_units for g in graph.groups]
    assert _kept(graph, blind.keep)[1] < n[1]  # MACs alone prune it
    assert _kept(graph, aware.keep)[1] == n[1]  # the latency-aware menus do not
    assert 0.42 <= aware.ratio <= 0.5  # met by the groups whose time falls (steps of 8 channels are coarse here)
    assert _kept(graph, aware.keep)[0] < _kept(graph, blind.keep)[0] or \
        _kept(graph, aware.keep)[2] < _kept(graph, blind.keep)[2]
    assert "kept whole" in aware.width_policy
    # the plan is faster for the same MACs budget
    assert latency.predict_ms(aware.keep) < latency.predict_ms(blind.keep)


def test_tight_budget_falls_back_to_every_width():
    graph = graphprune.inspect(convnet(), X)
    latency = FlatGroupLatency(graph, flat=1)
    alloc = allocate(graph, score_units(graph, "l2"), Budget.macs(0.12), "global", AllocationConfig(latency=latency))
    assert alloc.ratio <= 0.12
    assert _kept(graph, alloc.keep)[1] < graph.groups[1].n_units  # reachable only by pruning the flat group too


def test_menus_unchanged_when_every_cut_frees_time():
    graph = graphprune.inspect(convnet(), X)
    latency = FakeLatency(graph)
    menus = width_menus(np.array([g.n_units for g in graph.groups]), "auto", latency)
    assert time_effective_menus(graph, menus, latency) is menus


def test_blocked_layout_runtimes_prefer_multiples_of_16_then_steps():
    from graphprune.latency import Target

    graph = graphprune.inspect(convnet(), X)
    n = np.array([g.n_units for g in graph.groups])
    ort = width_menus(n, "auto", FakeLatency(graph, Target("ort-cpu")))
    assert all(set(ort.allowed(i, 1)) <= set(range(16, 65, 16)) | {int(n[i])} for i in range(len(n)))
    assert ort.fallback is not None and ort.fallback.allowed(0, 1).tolist() == list(range(8, 65, 8))
    eager = width_menus(n, "auto", FakeLatency(graph, Target("torch-cpu")))
    assert eager.fallback is None and eager.allowed(0, 1).tolist() == list(range(8, 65, 8))
    # a budget the multiples of 16 cannot reach uses the step ends
    cfg = AllocationConfig(latency=FakeLatency(graph, Target("ort-cpu")))
    alloc = allocate(graph, score_units(graph, "l2"), Budget.macs(0.06), "global", cfg)
    assert alloc.ratio <= 0.06 and "latency steps" in alloc.width_policy

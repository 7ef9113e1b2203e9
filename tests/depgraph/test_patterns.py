"""Mask equivalence on every coupling pattern, for random plans (property test) and ONNX Runtime."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphprune.depgraph import build_dependency_graph
from graphprune.testing import PATTERNS, check_rewrite, randomize_
from graphprune.trace import trace

IDS = [p.name for p in PATTERNS]


def _setup(pattern):
    torch.manual_seed(0)
    model = randomize_(pattern.build().eval())
    x = pattern.make_input()
    return model, x, build_dependency_graph(trace(model, x))


@pytest.mark.parametrize("pattern", PATTERNS, ids=IDS)
def test_pattern_random_plans_are_mask_equivalent(pattern):
    model, x, graph = _setup(pattern)
    assert graph.groups, f"{pattern.name}: nothing prunable"

    @settings(max_examples=6, deadline=None, derandomize=True)
    @given(seed=st.integers(0, 2**31 - 1), p_keep=st.floats(0.15, 0.9))
    def prop(seed, p_keep):
        r = check_rewrite(model, x, seed=seed, p_keep=p_keep, graph=graph)
        assert r.counted_macs < graph.cost().macs  # something was really removed
        assert r.pruned.graph.lint() is None

    prop()


@pytest.mark.parametrize("pattern", PATTERNS, ids=IDS)
def test_pattern_onnx_runtime_matches(pattern, tmp_path):
    model, x, graph = _setup(pattern)
    r = check_rewrite(model, x, seed=1, graph=graph, onnx_path=str(tmp_path / f"{pattern.name}.onnx"))
    assert r.onnx_diff is not None and r.onnx_diff < 1e-4


@pytest.mark.parametrize("pattern", PATTERNS, ids=IDS)
def test_pattern_exactness_is_declared(pattern):
    """Groups touching LayerNorm axes say so; all others are exact."""
    _, _, graph = _setup(pattern)
    assert all(g.exact for g in graph.groups) == pattern.exact


def test_full_keep_rewrite_is_identity():
    model, x, graph = _setup(PATTERNS[0])
    r = check_rewrite(model, x, keep=graph.full_keep(), graph=graph)
    with torch.no_grad():
        assert torch.allclose(r.pruned(x), model(x), atol=1e-6)
    assert r.counted_macs == graph.cost().macs


def test_pruning_everything_but_one_unit_per_group():
    model, x, graph = _setup(PATTERNS[0])
    keep = np.zeros(graph.n_units, dtype=bool)
    for g in graph.groups:
        keep[g.first_unit] = True
    check_rewrite(model, x, keep=keep, graph=graph)

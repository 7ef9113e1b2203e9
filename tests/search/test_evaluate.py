"""graphprune.evaluate: the masked candidate equals the rewritten model, before and after BN recalibration.

(Lives under tests/search/ because candidate evaluation exists for the searches.)
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune.evaluate import CandidateEvaluator, EvalConfig, MaskedGraph, classification_eval_fn, \
    preserves_zeros, recalibrate_bn
from graphprune.passes import masked_model, rewrite
from graphprune.testing import PATTERNS, random_keep, randomize_


pytestmark = pytest.mark.usefixtures("one_thread")


def _first(y):
    return y[0] if isinstance(y, (tuple, list)) else y


def _setup(pattern):
    model = randomize_(pattern.build().eval())
    x = pattern.make_input()
    return model, x, graphprune.inspect(model, x)


@pytest.mark.parametrize("pattern", PATTERNS, ids=[p.name for p in PATTERNS])
def test_swapped_masks_equal_the_masked_reference(pattern):
    """One MaskedGraph, three keep masks swapped in and out: each equals a fresh ``masked_model``."""
    _, x, graph = _setup(pattern)
    masked = MaskedGraph(graph)
    keeps = [random_keep(graph, np.random.default_rng(s)) for s in range(3)]
    for keep in keeps + keeps[:1]:
        with torch.no_grad():
            got, want = _first(masked.set_keep(keep)(x)), _first(masked_model(graph, keep)(x))
        assert torch.allclose(got, want, rtol=0, atol=1e-6 * max(1.0, float(want.abs().max())))


@pytest.mark.parametrize("pattern", PATTERNS, ids=[p.name for p in PATTERNS])
def test_masked_equals_rewrite_before_and_after_recalibration(pattern):
    model, x, graph = _setup(pattern)
    keep = random_keep(graph, np.random.default_rng(1))
    masked = MaskedGraph(graph).set_keep(keep)
    pruned = rewrite(graph, keep).eval()
    calib = [pattern.make_input() for _ in range(3)]
    for step in ("before", "after"):
        with torch.no_grad():
            got, want = _first(masked(x)), _first(pruned(x))
        scale = max(1.0, float(want.abs().max()))
        assert float((got - want).abs().max()) <= 1e-5 * scale, f"{step} recalibration"
        recalibrate_bn(masked, calib)
        recalibrate_bn(pruned, calib)


def test_sparse_sites_skip_zero_preserving_ops_and_keep_the_numbers():
    """Sigmoid and `+ 1` do not map 0 to 0: those outputs are masked; conv/BN/ReLU outputs are not."""

    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.bn, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = torch.relu(self.bn(self.a(x)))
            return self.b(torch.sigmoid(y) * y + 1.0)

    model = randomize_(Gate().eval())
    x = torch.randn(2, 3, 6, 6)
    graph = graphprune.inspect(model, x)
    masked = MaskedGraph(graph)
    modules = dict(masked.gm.named_modules())
    kinds = {n.name: preserves_zeros(n, modules) for n in graph.traced.gm.graph.nodes}
    assert kinds["a"] and kinds["bn"] and kinds["relu"] and not kinds["sigmoid"] and not kinds["add"]
    assert len(masked.sites) == 2 and len(MaskedGraph(graph, sites="all").sites) > 2
    keep = random_keep(graph, np.random.default_rng(0))
    with torch.no_grad():
        assert torch.allclose(masked.set_keep(keep)(x), rewrite(graph, keep).eval()(x), atol=1e-5)


def test_recalibration_is_the_exact_mean_over_batches_and_restores_settings():
    model, x, graph = _setup(PATTERNS[0])
    gm = MaskedGraph(graph).set_keep(graph.full_keep())
    calib = [torch.randn(4, 3, 8, 8) for _ in range(3)]
    assert recalibrate_bn(gm, calib) > 0
    bn, stem = gm.get_submodule("stem.1"), gm.get_submodule("stem.0")
    want = torch.stack([stem(b).mean((0, 2, 3)) for b in calib]).mean(0)
    assert torch.allclose(bn.running_mean, want, atol=1e-5)
    assert bn.momentum == 0.1 and not gm.training
    assert recalibrate_bn(gm, []) == 0


def test_evaluator_caches_restores_and_leaves_the_user_model_alone():
    model, x, graph = _setup(PATTERNS[0])
    before = copy.deepcopy(model.state_dict())
    data = [(torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))) for _ in range(2)]
    ev = CandidateEvaluator(graph, classification_eval_fn(data, "neg_loss"), data)
    k1, k2 = (random_keep(graph, np.random.default_rng(s)) for s in range(2))
    s1 = ev(k1)
    ev(k2)
    assert ev(k1) == s1 and ev.calls == 2
    ev_fresh = CandidateEvaluator(graph, classification_eval_fn(data, "neg_loss"), data, EvalConfig(cache=False))
    ev_fresh(k2)
    assert ev_fresh(k1) == pytest.approx(s1, abs=1e-6)  # BN statistics restored between candidates
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="calib_data"):
        CandidateEvaluator(graph, lambda m: 0.0, None)


def test_classification_eval_fn_values():
    class Fixed(nn.Module):
        def forward(self, x):
            return torch.stack([x[:, 0], -x[:, 0]], 1)

    x = torch.tensor([[1.0], [2.0], [-1.0], [3.0]])
    y = torch.tensor([0, 0, 0, 1])
    assert classification_eval_fn([(x, y)])(Fixed()) == pytest.approx(0.5)
    want = -torch.nn.functional.cross_entropy(Fixed()(x), y).item()
    assert classification_eval_fn([(x, y)], "neg_loss")(Fixed()) == pytest.approx(want)
    with pytest.raises(ValueError):
        classification_eval_fn([x])

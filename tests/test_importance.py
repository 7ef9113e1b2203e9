"""Each criterion ranks channels correctly on a model whose right answer is known by construction."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune.importance import CRITERIA, normalize_per_group, score_units


class Known(nn.Module):
    """conv -> BN -> conv: channel i of the first conv has weights and BN scale growing with i."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 6, 1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.b = nn.Conv2d(6, 3, 1, bias=False)
        with torch.no_grad():
            scale = torch.arange(1, 7, dtype=torch.float32)
            self.a.weight.copy_(scale.view(6, 1, 1, 1).expand(6, 2, 1, 1))
            self.bn.weight.copy_(scale)
            self.bn.bias.zero_()
            self.b.weight.fill_(1.0)

    def forward(self, x):
        return self.b(self.bn(self.a(x)))


@pytest.fixture
def graph():
    return graphprune.inspect(Known().eval(), torch.randn(1, 2, 4, 4))


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn"])
def test_ranking_follows_magnitude(graph, criterion):
    s = score_units(graph, criterion)
    assert len(graph.groups) == 1 and graph.n_units == 6
    assert list(np.argsort(s)) == [0, 1, 2, 3, 4, 5]


def test_l1_value_is_sum_over_coupled_slices(graph):
    s = score_units(graph, "l1")
    # unit i: conv a row (2 * i) + bn gamma (i) + bn beta (0) + conv b column (3 * 1)
    i = np.arange(1, 7)
    assert np.allclose(s, 2 * i + i + 3)


def test_random_is_seeded_and_uninformative(graph):
    assert np.array_equal(score_units(graph, "random"), score_units(graph, "random"))


def test_custom_callable_and_errors(graph):
    s = score_units(graph, lambda g: -np.arange(g.n_units))
    assert s[0] == 0
    with pytest.raises(ValueError, match="unknown importance"):
        score_units(graph, "nope")
    with pytest.raises(ValueError, match="shape"):
        score_units(graph, lambda g: np.zeros(3))


def test_normalize_per_group(graph):
    s = normalize_per_group(graph, score_units(graph, "l2"), "max")
    assert s.max() == pytest.approx(1.0)
    assert set(CRITERIA) >= {"l1", "l2", "bn", "random"}


@pytest.mark.parametrize("aggregate, expected", [("sum", lambda i: 3 * i + 3), ("mean", lambda i: (3 * i + 3) / 4),
                                                 ("max", lambda i: np.maximum(2 * i, 3))])
def test_l1_aggregates_over_coupled_dims(graph, aggregate, expected):
    """Unit i's dims: conv a row (2i), BN gamma (i), BN beta (0), conv b column (3)."""
    s = score_units(graph, "l1", aggregate=aggregate)
    assert np.allclose(s, expected(np.arange(1, 7)))


# ---- data-driven criteria ---------------------------------------------------------------------
class Chain(nn.Module):
    """x -> 1x1 conv a (2 -> 6) -> 1x1 conv b (6 -> 1): unit i has a-row weight i and b-column weight c_i."""

    def __init__(self, consumer=(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)):
        super().__init__()
        self.a = nn.Conv2d(2, 6, 1, bias=False)
        self.b = nn.Conv2d(6, 1, 1, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(torch.arange(1, 7, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 2, 1, 1))
            self.b.weight.copy_(torch.tensor(consumer).view(1, 6, 1, 1))

    def forward(self, x):
        return self.b(self.a(x)).flatten(1).mean(1)


def _linear_loss(out, target):
    return (out * target).mean()


def _ones_calib(n=4, signs=(1.0,)):
    targets = torch.tensor([signs[k % len(signs)] for k in range(n)])
    return [(torch.ones(n, 2, 1, 1), targets)]


def test_taylor_is_weight_times_gradient_summed_over_the_group():
    """L = mean_n out_n, out = Σ_i c_i a_i·x with x = 1: unit i contributes 2·c_i·(2i) = 4 i c_i."""
    consumer = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    g = graphprune.inspect(Chain(consumer), torch.ones(1, 2, 1, 1))
    s = score_units(g, "taylor", calib=_ones_calib(), loss_fn=_linear_loss)
    assert np.allclose(s, 4 * np.arange(1, 7))


def test_taylor_sees_a_dead_consumer_that_magnitude_misses():
    """Channel 5 has the largest weights but its consumer weight is 0: removing it changes nothing."""
    consumer = (1.0, 1.0, 1.0, 1.0, 1.0, 0.0)
    g = graphprune.inspect(Chain(consumer), torch.ones(1, 2, 1, 1))
    assert np.argmax(score_units(g, "l2")) == 5
    s = score_units(g, "taylor", calib=_ones_calib(), loss_fn=_linear_loss)
    assert s[5] == pytest.approx(0.0) and np.argmin(s) == 5


def test_fisher_is_per_sample_squared_so_opposite_gradients_do_not_cancel():
    """Targets ±1: the batch gradient (Taylor) cancels to 0, Fisher = 1/(2N) Σ_n (2i)² = 2 i² does not."""
    g = graphprune.inspect(Chain(), torch.ones(1, 2, 1, 1))
    calib = _ones_calib(4, signs=(1.0, -1.0))
    # per-sample loss L_n = out_n t_n (mean loss × N): ∂L_n/∂gate_i = t_n · a_i · c_i = ±2i
    assert np.allclose(score_units(g, "taylor", calib=calib, loss_fn=_linear_loss), 0.0)
    fisher = score_units(g, "fisher", calib=calib, loss_fn=_linear_loss)
    assert np.allclose(fisher, 2 * np.arange(1, 7) ** 2)


class TwoBranches(nn.Module):
    """Two identical branches, the second at stride 2: its channels cost 1/4 of the memory and MACs."""

    def __init__(self):
        super().__init__()
        self.a1, self.a2 = nn.Conv2d(2, 4, 1, bias=False), nn.Conv2d(2, 4, 1, stride=2, bias=False)
        self.b1, self.b2 = nn.Conv2d(4, 1, 1, bias=False), nn.Conv2d(4, 1, 1, bias=False)
        with torch.no_grad():
            for m in (self.a1, self.a2):
                m.weight.copy_(torch.arange(1, 5, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 2, 1, 1))
            self.b1.weight.fill_(1.0)
            self.b2.weight.fill_(1.0)

    def forward(self, x):
        return self.b1(self.a1(x)).mean((1, 2, 3)) + self.b2(self.a2(x)).mean((1, 2, 3))


@pytest.mark.parametrize("criterion", ["group_fisher", "group_fisher_macs"])
def test_group_fisher_divides_by_the_cost_a_channel_frees(criterion):
    g = graphprune.inspect(TwoBranches(), torch.ones(1, 2, 4, 4))
    assert [gr.n_units for gr in g.groups] == [4, 4]
    calib = [(torch.ones(3, 2, 4, 4), torch.ones(3))]
    raw = score_units(g, "fisher", calib=calib, loss_fn=_linear_loss)
    assert np.allclose(raw[:4], raw[4:])  # mean pooling: equal loss sensitivity in both branches
    s = score_units(g, criterion, calib=calib, loss_fn=_linear_loss)
    assert np.allclose(s[4:] / s[:4], 4.0)  # the stride-2 branch frees 4x less per channel
    assert list(np.argsort(s[:4])) == [0, 1, 2, 3]


def test_data_criteria_say_they_need_data(graph):
    for name in ("taylor", "fisher", "group_fisher"):
        assert CRITERIA[name].needs_data
        with pytest.raises(ValueError, match="calibration data"):
            score_units(graph, name)
    assert not CRITERIA["l2"].needs_data
    assert np.allclose(CRITERIA["l2"](graph), score_units(graph, "l2"))  # rows are callable on a graph


def test_data_criteria_on_a_real_block_leave_the_model_untouched():
    from graphprune.testing import PATTERNS, randomize_

    p = PATTERNS[0]
    model = randomize_(p.build().eval())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = p.make_input()
    g = graphprune.inspect(model, x)
    calib = [(torch.randn(4, *x.shape[1:]), torch.randint(0, 10, (4,)))]
    for name in ("taylor", "group_fisher"):
        for aggregate in ("sum", "mean", "max"):
            s = score_units(g, name, calib=calib, aggregate=aggregate)
            assert s.shape == (g.n_units,) and np.all(np.isfinite(s)) and np.all(s >= 0) and s.max() > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())

"""CACP-bounded RL: every sampled plan meets its budget by construction; the policy saves, loads, plans."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphprune
from graphprune import Budget, BudgetError
from graphprune.evaluate import classification_eval_fn
from graphprune.importance import score_units
from graphprune.search import AllocationConfig, SearchContext
from graphprune.search.cacp import BoundedEpisode
from graphprune.search.conditional import ConditionalSearch, RLConfig
from graphprune.search.layer_graph import BUDGET, FEATURES, layer_graph
from graphprune.testing import PATTERNS, random_keep, randomize_

IMAGE_PATTERNS = [p for p in PATTERNS if p.name in ("residual", "inverted_residual_depthwise", "inception_concat",
                                                    "dense_concat", "flatten_linear", "grouped_conv")]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/search/conftest.py


_CTX = {}


def _ctx(pattern) -> SearchContext:
    if pattern.name not in _CTX:
        torch.manual_seed(0)
        graph = graphprune.inspect(randomize_(pattern.build().eval()), pattern.make_input())
        _CTX[pattern.name] = SearchContext(graph, score_units(graph, "l2"), Budget.macs(0.5), AllocationConfig(round_to=1),
                                           progress=False)
    return _CTX[pattern.name]


@pytest.mark.parametrize("pattern", PATTERNS, ids=[p.name for p in PATTERNS])
def test_fast_cost_equals_graph_cost(pattern):
    ctx = _ctx(pattern)
    for metric in ("macs", "params"):
        c = SearchContext(ctx.graph, ctx.scores, Budget(0.5, metric))
        for seed in range(3):
            keep = random_keep(ctx.graph, np.random.default_rng(seed))
            want = getattr(ctx.graph.cost(keep), metric) / getattr(ctx.graph.cost(), metric)
            assert c.ratio_of(keep) == pytest.approx(want, rel=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=st.sampled_from(IMAGE_PATTERNS), budget=st.floats(0.05, 1.0), seed=st.integers(0, 10 ** 6),
       mode=st.sampled_from(["random", "greedy_keep", "greedy_prune"]))
def test_any_action_sequence_meets_the_budget(pattern, budget, seed, mode):
    """The bound alone guarantees cost <= β: even an adversary asking for everything cannot exceed it."""
    ctx = _ctx(pattern)
    try:
        env = BoundedEpisode(ctx, budget)
    except BudgetError:
        floor = ctx.ratio_of(ctx.keep_from_counts(ctx.lo))
        assert floor > budget
        return
    rng = np.random.default_rng(seed)
    for l in range(len(ctx.n)):
        k_lo, k_hi = env.bounds(l)
        assert ctx.lo[l] <= k_lo <= k_hi <= ctx.n[l]
        desired = {"random": rng.uniform(0, ctx.n[l]), "greedy_keep": ctx.n[l], "greedy_prune": 0}[mode]
        env.step(l, desired, (k_lo, k_hi))
        assert env.committed(l + 1) <= budget + 1e-12  # invariant: the rest at their floors still fits
    ratio = ctx.ratio_of(env.keep())
    assert ratio <= budget + 1e-12
    if budget < 0.99:  # the symmetric bound uses the budget up to the last group's granularity
        step = max(ctx.ratio_of(ctx.graph.full_keep()) - ctx.ratio_of(ctx.keep_from_counts(
            np.where(np.arange(len(ctx.n)) == len(ctx.n) - 1, ctx.n - 1, ctx.n))), 0.0)
        assert ratio >= min(budget, 1.0) - max(0.12, 2 * step) or mode == "greedy_prune"


def test_bound_is_exact_on_a_real_network():
    """ResNet-20: any sampled plan lands within 2 points below β, no penalty or rejection involved."""
    import models

    model = models.build("resnet20", num_classes=10, in_channels=1).eval()
    graph = graphprune.inspect(model, torch.zeros(1, 1, 28, 28))
    s = ConditionalSearch.from_context(SearchContext(graph, score_units(graph, "l2"), Budget.macs(0.5),
                                                     progress=False), RLConfig())
    rng = np.random.default_rng(0)
    for budget in rng.uniform(0.3, 0.8, 6):
        with torch.no_grad():
            keep, logp, ent, info = s.rollout(float(budget))
        assert budget - 0.02 <= info["ratio"] <= budget and torch.isfinite(logp)


def test_layer_graph_features_and_edges():
    ctx = _ctx(PATTERNS[0])
    lg = layer_graph(ctx.graph, ctx.scores)
    assert lg.features.shape == (len(ctx.graph.groups), len(FEATURES))
    e = lg.edge_index
    assert e.shape[0] == 2 and e.shape[1] >= 2 * (len(ctx.graph.groups) - 1)
    assert {tuple(p) for p in e.T.tolist()} == {tuple(p) for p in e.flip(0).T.tolist()}  # undirected
    assert not torch.equal(lg.with_budget(0.3), lg.with_budget(0.7))
    assert torch.equal(lg.with_budget(0.3)[:, :BUDGET], lg.features[:, :BUDGET])


@pytest.fixture(scope="module")
def trained():
    p = PATTERNS[0]
    torch.manual_seed(0)
    model = randomize_(p.build().eval())
    x = p.make_input()
    data = [(p.make_input(), torch.randint(0, 10, (2,))) for _ in range(2)]
    s = ConditionalSearch(model, x, classification_eval_fn(data, "neg_loss"), data,
                          config=RLConfig(batch_episodes=2, seed=1), progress=False)
    s.fit(6)
    return s, model, x, data


def test_fit_records_rewards_within_budget(trained):
    s = trained[0]
    assert len(s.history) == 6
    for h in s.history:
        assert 0.3 <= h["budget"] <= 0.8 and h["ratio"] <= h["budget"] + 1e-12 and np.isfinite(h["reward"])
    assert s.ctx.evaluator.calls >= 1


@pytest.mark.parametrize("budget", [0.3, 0.45, 0.62, 0.8])
def test_plan_for_any_budget_reports_the_projection(trained, budget):
    s = trained[0]
    plan = s.plan(budget)
    keep = plan.keep_mask(s.graph)
    assert s.ctx.ratio_of(keep) <= budget and plan.info["achieved"] <= budget
    moved = plan.info["projection"]
    assert moved["ratio_before"] <= budget and moved["ratio_after"] == pytest.approx(plan.info["achieved"])
    assert 0 <= moved["units_changed"] <= moved["units"]


def test_policy_save_load_round_trip(trained, tmp_path):
    s, model, x, data = trained
    path = tmp_path / "policy.pt"
    s.save(path)
    fresh = ConditionalSearch(model, x, progress=False).load(path)  # no eval_fn needed to plan
    for budget in (0.35, 0.6):
        assert fresh.plan(budget).kept == s.plan(budget).kept
    assert len(fresh.history) == len(s.history)
    other = PATTERNS[3]
    with pytest.raises(ValueError, match="other groups"):
        ConditionalSearch(other.build().eval(), other.make_input(), progress=False).load(path)


def test_reward_curve_png(trained, tmp_path):
    path = tmp_path / "rewards.png"
    trained[0].plot_rewards(path, window=3)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_fit_needs_an_eval_fn(trained):
    _, model, x, _ = trained
    with pytest.raises(ValueError, match="eval_fn"):
        ConditionalSearch(model, x, progress=False).fit(1)


def test_policy_learns_on_a_known_reward():
    """Reward = fraction of the first group kept (the last group is forced by the bound): REINFORCE must raise it."""
    ctx = _ctx(PATTERNS[0])

    class LastGroup:
        calls, seconds = 0, 0.0

        def __call__(self, keep):
            g = ctx.graph.groups[0]
            return float(keep[g.units].mean())

    torch.manual_seed(0)
    ctx_e = SearchContext(ctx.graph, ctx.scores, Budget.macs(0.5), progress=False, evaluator=LastGroup())
    s = ConditionalSearch.from_context(ctx_e, RLConfig(budget_range=(0.5, 0.5), lr=3e-2, batch_episodes=4,
                                                               init="none"))  # the cold start: learning alone
    s.fit(60)
    r = [h["reward"] for h in s.history]
    assert np.mean(r[-12:]) > np.mean(r[:12])

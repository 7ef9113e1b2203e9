"""graphprune.search.supernet: sub-networks trained through masks are the rewritten sub-networks; the user's
model is never touched; BN statistics stay clean; the search option meets its budget with original weights."""
import copy

import numpy as np
import pytest
import torch

import graphprune
from graphprune import Budget
from graphprune.evaluate import MaskedGraph, classification_eval_fn, recalibrate_bn
from graphprune.importance import score_units
from graphprune.passes import rewrite
from graphprune.search import SupernetConfig, run_search, train_supernet
from graphprune.search.supernet import SubnetSampler, _Trainer, as_supernet_config, fit_supernet, kd_loss, \
    with_weights
from graphprune.testing import PATTERNS, random_keep, randomize_

X = torch.randn(1, 1, 16, 16)
FAST = SupernetConfig(steps=3, batch_size=8, bn_batches=2, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


def _first(y):
    return y[0] if isinstance(y, (tuple, list)) else y


def _resnet20():
    import models

    torch.manual_seed(0)
    return models.build("resnet20", num_classes=10, in_channels=1).eval()


def _data(n=4, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 1, 16, 16, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


@pytest.fixture(scope="module")
def trained():
    model = _resnet20()
    before = copy.deepcopy(model.state_dict())
    supernet = train_supernet(model, X, _data(), FAST)
    return model, before, supernet


def test_user_model_unchanged_and_supernet_has_its_structure(trained):
    model, before, supernet = trained
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert type(supernet) is type(model) and not supernet.training
    assert {k: v.shape for k, v in supernet.state_dict().items()} == {k: v.shape for k, v in before.items()}
    moved = [k for k, v in supernet.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.endswith("conv1.weight") for k in moved)
    g0, g1 = graphprune.inspect(model, X), graphprune.inspect(supernet, X)
    assert [g.name for g in g0.groups] == [g.name for g in g1.groups] and g0.n_units == g1.n_units
    with torch.no_grad():  # all masks 1: the masked copy is the plain model, and the numbers are sane
        y = supernet(X)
        assert torch.isfinite(y).all()
        assert torch.allclose(MaskedGraph(g1).set_keep(g1.full_keep())(X), y, atol=1e-5)


def test_masked_supernet_candidate_equals_the_rewritten_subnetwork(trained):
    """Scored as the search scores it (``with_weights``) == the supernet's sub-network rewritten."""
    model, _, supernet = trained
    graph = graphprune.inspect(model, X)
    graph_s = graphprune.inspect(supernet, X)
    state = {k: v for k, v in supernet.state_dict().items() if k in graph.traced.gm.state_dict()}
    calib = [b[0] for b in _data(3, seed=5)]
    for seed in range(2):
        keep = random_keep(graph, np.random.default_rng(seed))
        masked = MaskedGraph(with_weights(graph, state)).set_keep(keep)
        pruned = rewrite(graph_s, keep).eval()
        for step in ("before", "after"):
            with torch.no_grad():
                got, want = masked(calib[0]), pruned(calib[0])
            assert float((got - want).abs().max()) <= 1e-5 * max(1.0, float(want.abs().max())), step
            recalibrate_bn(masked, calib)
            recalibrate_bn(pruned, calib)


@pytest.mark.parametrize("pattern", PATTERNS, ids=[p.name for p in PATTERNS])
def test_training_forward_is_the_rewritten_subnetwork_in_train_mode(pattern):
    """W ⊙ m through ``functional_call`` + mask buffers == the rewritten sub-network (BN on batch statistics)."""
    model = randomize_(pattern.build().eval())
    x = pattern.make_input()
    graph = graphprune.inspect(model, x)
    trainer = _Trainer(graph, FAST)
    trainer.gm.train()
    keep = random_keep(graph, np.random.default_rng(3))
    got = _first(trainer.logits(keep, (x,)))
    want = _first(rewrite(graph, keep).train()(x)).detach()
    assert float((got.detach() - want).abs().max()) <= 1e-5 * max(1.0, float(want.abs().max()))
    got.float().sum().backward()  # pruned slices of the shared weights get exactly no gradient
    for tensor, m in zip(trainer.masked.param_tensors, trainer.masked.param_masks(keep)):
        if tensor.grad is not None:
            assert float((tensor.grad * (1 - m)).abs().max()) == 0.0


def test_batchnorm_statistics_are_not_corrupted_by_masked_channels():
    model = _resnet20()
    graph = graphprune.inspect(model, X)
    scores = score_units(graph, "l2")
    data = _data()
    frozen = fit_supernet(graph, scores, data, SupernetConfig(steps=4, bn_batches=0, progress=False))
    original = graph.traced.gm.state_dict()
    stats = [k for k in original if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(frozen.state[k], original[k]) for k in stats)  # training never wrote them
    assert not torch.equal(frozen.state["conv1.weight"], original["conv1.weight"])
    recal = fit_supernet(graph, scores, data, SupernetConfig(steps=4, bn_batches=2, progress=False))
    full = with_weights(graph, recal.state).traced.gm
    again = copy.deepcopy(full)
    recalibrate_bn(again, [b[0] for b in data[:2]])  # the exact full-network mean over those batches
    assert all(torch.allclose(again.state_dict()[k], recal.state[k], atol=1e-6) for k in stats)
    assert min(float(recal.state[k].min()) for k in stats if k.endswith("var")) > 1e-4


def test_a_short_run_lowers_the_kd_loss_of_sampled_subnetworks():
    model = _resnet20()
    graph = graphprune.inspect(model, X)
    scores = score_units(graph, "l2")
    data = _data(n=4, size=16)
    config = SupernetConfig(steps=24, lr=0.05, bn_batches=4, progress=False)
    sampler = SubnetSampler(graph, scores, config)
    keeps = [sampler() for _ in range(4)]
    inputs = [b[0] for b in data]
    with torch.no_grad():
        teacher = [graph.traced.gm(x) for x in inputs]

    def mean_kd(g):
        masked, total = MaskedGraph(g), 0.0
        for keep in keeps:
            gm = masked.set_keep(keep)
            recalibrate_bn(gm, inputs)
            with torch.no_grad():
                total += sum(float(kd_loss(gm(x), t, config.temperature)) for x, t in zip(inputs, teacher))
        return total / (len(keeps) * len(inputs))

    result = fit_supernet(graph, scores, data, config)
    before, after = mean_kd(graph), mean_kd(with_weights(graph, result.state))
    assert after < 0.8 * before, (before, after)
    assert np.mean(result.losses[-6:]) < np.mean(result.losses[:6])


@pytest.mark.parametrize("strategy,options", [("evolutionary", {"population": 3, "generations": 1}),
                                              ("sensitivity", {"levels": (0.3,)}),
                                              ("rl", {"episodes": 2, "batch_episodes": 2})])
def test_prune_with_supernet_meets_the_budget_with_the_original_weights(strategy, options):
    model = _resnet20()
    before = copy.deepcopy(model.state_dict())
    calib = _data(2, seed=1)
    result = graphprune.prune(model, 0.5, X, strategy=strategy, calib_data=calib, search_options=options,
                              train_data=_data(), supernet=FAST, return_result=True)
    assert 0.48 <= result.report.macs_ratio <= 0.5 + 1e-9
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    plain = graphprune.apply_plan(model, result.plan, X)  # the plan applied to the user's weights
    with torch.no_grad():
        assert torch.allclose(result.model(calib[0][0]), plain.eval()(calib[0][0]), atol=1e-6)


def test_run_search_reports_the_supernet_and_its_weights_can_be_chosen_instead():
    model = _resnet20()
    graph = graphprune.inspect(model, X)
    calib = _data(2, seed=1)
    r = run_search("evolutionary", graph, score_units(graph, "l2"), Budget.macs(0.5), calib_data=calib,
                   options={"population": 2, "generations": 1}, supernet=FAST, train_data=_data())
    assert r.info["supernet"]["steps"] == FAST.steps and r.ratio <= 0.5
    plan = graphprune.Plan.from_keep(graph, r.keep, budget=0.5, metric="macs")
    from_supernet = graphprune.apply_plan(train_supernet(model, X, _data(), FAST), plan, X).eval()
    from_original = graphprune.apply_plan(model, plan, X).eval()
    with torch.no_grad():
        assert from_supernet(X).shape == from_original(X).shape
        assert not torch.allclose(from_supernet(X), from_original(X))


def test_conditional_search_scores_on_the_supernet():
    from graphprune.search import ConditionalSearch, RLConfig

    model, calib = _resnet20(), _data(2, seed=1)
    s = ConditionalSearch(model, X, classification_eval_fn(calib, "neg_loss"), calib, supernet=FAST,
                          train_data=_data(), config=RLConfig(batch_episodes=2), progress=False)
    assert s.supernet is not None and len(s.supernet.losses) == FAST.steps
    s.fit(2)
    assert s.search_result(0.5).ratio <= 0.5


def test_bad_input_is_refused_with_a_reason():
    model = _resnet20()
    with pytest.raises(ValueError, match="train_data"):
        graphprune.prune(model, 0.5, X, strategy="evolutionary", calib_data=_data(1), supernet=True)
    with pytest.raises(ValueError, match="train_data"):
        train_supernet(model, X, None)
    with pytest.raises(ValueError, match="scores none"):
        graphprune.prune(model, 0.5, X, strategy="global", train_data=_data(), supernet=True)
    with pytest.raises(ValueError, match="no batches"):
        train_supernet(model, X, [], SupernetConfig(steps=1, progress=False))
    with pytest.raises(ValueError, match="invalid SupernetConfig"):
        SupernetConfig(budget_range=(0.8, 0.3))
    with pytest.raises(TypeError):
        as_supernet_config("yes")
    assert as_supernet_config(True) == SupernetConfig() and as_supernet_config(False) is None
    assert as_supernet_config({"steps": 7}).steps == 7

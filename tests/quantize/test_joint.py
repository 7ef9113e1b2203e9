"""Size / BOPs costs are right, and every allocation meets its budget by construction."""
import numpy as np
import pytest

import graphprune
from graphprune.budget import BudgetError
from graphprune.importance import score_units
from graphprune.passes import rewrite
from graphprune.quantize import QuantBudget, QuantCost
from graphprune.quantize.joint import JointConfig, JointSpace, joint_search
from graphprune.quantize.layers import quant_layers
from graphprune.flops import counted_macs
from quant_nets import EXAMPLE


def _space(net, budget, round_to="auto"):
    graph = graphprune.inspect(net, EXAMPLE)
    return JointSpace(graph, score_units(graph, "l2"), budget, round_to=round_to)


def _measured_size(model, bits) -> float:
    """Bytes from the pruned module itself: Conv/Linear weights at their bits, every other parameter fp32."""
    weights = {f"{layer.name}.weight": bits.get(layer.name, 8) for layer in quant_layers(model)}
    return sum(p.numel() * weights.get(name, 32) / 8 for name, p in model.named_parameters())


def test_size_and_bops_match_the_pruned_model(net):
    space = _space(net, QuantBudget.size(0.2))
    keep = space.global_keep({}).keep
    bits = {"conv1": 32}
    pruned = rewrite(space.graph, keep)
    assert space.cost.size_bytes(keep, bits) == pytest.approx(_measured_size(pruned, bits))
    dense_params = sum(p.numel() for p in net.parameters())
    assert space.cost.dense("size") == pytest.approx(4 * dense_params)
    # BOPs: with every layer int8, each MAC of a Conv/Linear costs 8·8 and the rest 32·32
    macs = space.graph.cost(keep).macs
    layer_macs = sum(space.graph.node_macs(keep)[layer.node] for layer in space.cost.layers)
    assert space.cost.bops(keep, {}) == pytest.approx(64 * layer_macs + 1024 * (macs - layer_macs))
    assert macs == pytest.approx(counted_macs(pruned, (EXAMPLE,)))


@pytest.mark.parametrize("budget", [QuantBudget.size(0.22), QuantBudget.size(0.12), QuantBudget.bops(0.03),
                                    QuantBudget.bytes(4000)])
@pytest.mark.parametrize("round_to", ["auto", 1])
def test_allocations_meet_the_budget(net, budget, round_to):
    space = _space(net, budget, round_to)
    for candidate in (space.uniform({}), space.global_keep({}), space.fit(np.linspace(0.2, 1, len(space.n)), {})):
        assert candidate.cost <= space.allowed
        assert candidate.cost == space.cost_of(candidate.keep, candidate.bits)
        assert not candidate.keep.all()
        kept = np.array([candidate.keep[g.units].sum() for g in space.graph.groups])
        assert np.all((kept == space.n) | (kept % space.step == 0))  # widths on the menu
    if round_to == 1:  # exact widths: the bisection lands near the budget, not far below it
        assert space.global_keep({}).cost > 0.8 * space.allowed


def test_joint_search_meets_the_budget_and_keeps_the_best(net):
    space = _space(net, QuantBudget.size(0.15))
    rng = np.random.default_rng(0)
    best, scored = joint_search(space, lambda keep, bits: float(rng.random()), (8, 32),
                                JointConfig(population=4, generations=2))
    assert len(scored) >= 4
    assert all(c.cost <= space.allowed for c in scored)
    assert best.score == max(c.score for c in scored)
    assert any(32 in c.bits.values() for c in scored)  # fp32 layers were tried


def test_unreachable_budget_says_so(net):
    space = _space(net, QuantBudget.size(0.001))
    with pytest.raises(BudgetError, match="smallest model"):
        space.global_keep({})


def test_bad_budgets_are_refused():
    with pytest.raises(BudgetError, match=r"\(0, 1\]"):
        QuantBudget.size(1.5)
    with pytest.raises(BudgetError, match="metric"):
        QuantBudget("macs", ratio=0.5)


def test_rl_controller_meets_the_budget_and_keeps_the_best(net):
    pytest.importorskip("torch_geometric")
    from graphprune.quantize.rl import RLJointConfig, rl_joint_search

    space = _space(net, QuantBudget.size(0.15))
    # reward: keep many units and leave `down` in fp32 — something the controller can move toward
    reward = lambda keep, bits: keep.mean() + 0.5 * (bits["down"] == 32)  # noqa: E731
    best, scored = rl_joint_search(space, reward, (8, 32), RLJointConfig(episodes=8, batch_episodes=4))
    assert all(c.cost <= space.allowed for c in scored)
    assert best.score == max(c.score for c in scored) and len(scored) >= 4
    assert any(32 in c.bits.values() for c in scored)

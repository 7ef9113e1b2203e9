"""prune() contract: bad input gets a specific error; the user's model is never changed."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import graphprune
from graphprune import BudgetError, Plan, PlanError, TraceError
from graphprune.testing import PATTERNS, check_rewrite, randomize_


def _residual():
    p = PATTERNS[0]
    return randomize_(p.build().eval()), p.make_input()


def test_state_dict_and_mode_unchanged_and_result_smaller():
    model, x = _residual()
    model.train()
    before = copy.deepcopy(model.state_dict())
    pruned = graphprune.prune(model, 0.5, x)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats included: no forward in train
    assert model.training and pruned.training  # the mode is carried over
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    assert type(pruned) is type(model)  # output="auto": the code bakes no size, so the user's own class
    user = {id(t) for t in list(model.parameters()) + list(model.buffers())}
    assert not any(id(t) in user for t in list(pruned.parameters()) + list(pruned.buffers()))
    with torch.no_grad():  # fine-tuning the pruned model must not touch the user's model
        for t in pruned.parameters():
            t.add_(1.0)
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before)


def test_untraceable_model_names_module_and_way_out():
    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.gate = Branchy()

        def forward(self, x):
            return self.gate(self.conv(x))

    with pytest.raises(TraceError, match=r"(?s)module .gate. \(Branchy\).*leaf_modules"):
        graphprune.prune(Net(), 0.5, torch.randn(1, 3, 8, 8), front_end="fx")
    # the default front end goes on to record the run: the conv's channels feed the branch's condition, so
    # they are frozen and the budget is refused with that reason, never pruned blind
    with pytest.warns(UserWarning, match="record"), pytest.raises(BudgetError, match="nothing to prune.*sum"):
        graphprune.prune(Net(), 0.5, torch.randn(1, 3, 8, 8))


def test_leaf_module_is_the_way_through():
    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3)
            self.b = nn.Conv2d(8, 8, 3)
            self.gate = Branchy()
            self.c = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.c(self.gate(F.relu(self.b(F.relu(self.a(x))))))

    model, x = Net().eval(), torch.randn(1, 3, 12, 12)
    graph = graphprune.inspect(model, x, leaf_modules=[Branchy])
    assert any("Branchy" in f.reason for f in graph.frozen)  # opaque module: its tensors frozen
    assert any(d.value == "@a.weight" for g in graph.groups for d in g.members)  # a -> b still prunable
    check_rewrite(model, x, graph=graph)


def test_auto_leaves_make_only_the_failing_modules_opaque():
    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    class Block(nn.Module):  # traceable itself, but holds an untraceable child
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, padding=1)
            self.gate = Branchy()

        def forward(self, x):
            return self.gate(F.relu(self.conv(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3)
            self.blocks = nn.Sequential(Block(), Block())
            self.c = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.c(self.blocks(F.relu(self.a(x))))

    model, x = Net().eval(), torch.randn(1, 3, 12, 12)
    with pytest.warns(UserWarning, match=r"2 module\(s\) fx could not trace.*blocks\.0\.gate, blocks\.1\.gate"):
        graph = graphprune.inspect(model, x, leaf_modules="auto")
    # the blocks' convs stay in the graph (only the innermost failing modules became leaves)
    assert any(d.value == "@blocks.0.conv.weight" for g in graph.groups for d in g.members)
    check_rewrite(model, x, graph=graph)
    with pytest.warns(UserWarning, match="kept opaque"):
        res = graphprune.prune(model, 0.6, x, leaf_modules=["auto"], return_result=True, round_to=1)
    assert res.report.macs_ratio <= 0.6


def test_auto_leaves_cannot_hide_a_failing_root():
    class Root(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)

        def forward(self, x):
            y = self.conv(x)
            return y * 2 if y.sum() > 0 else y

    with pytest.raises(TraceError, match=r"(?s)'<root>' \(Root\).*leaf_modules='auto'"):
        graphprune.prune(Root(), 0.5, torch.randn(1, 3, 8, 8), leaf_modules="auto", front_end="fx")


def test_nothing_prunable():
    class Tiny(nn.Module):
        def forward(self, x):
            return x.relu() + 1

    with pytest.raises(BudgetError, match="nothing to prune"):
        graphprune.prune(Tiny(), 0.5, torch.randn(2, 3))


def mystery(x):
    """A custom op fx keeps opaque; it reorders channels, so no rule could know how to prune it."""
    return x.flip(1)


torch.fx.wrap("mystery")


def test_custom_op_on_channel_path_is_frozen_rest_pruned_correctly():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 16, 3, padding=1)
            self.c = nn.Conv2d(16, 8, 3, padding=1)
            self.d = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.d(mystery(F.relu(self.c(F.relu(self.b(F.relu(self.a(x))))))))

    model, x = Net().eval(), torch.randn(1, 3, 8, 8)
    graph = graphprune.inspect(model, x)
    pruned_params = {d.value for g in graph.groups for d in g.members}
    assert "@c.weight" in pruned_params or "@c.bias" in pruned_params  # c's input side (b's output)
    assert not any(d.value == "@c.weight" and d.axis == 0 for g in graph.groups for d in g.members)
    assert any("mystery" in f.reason for f in graph.frozen)
    r = check_rewrite(model, x, graph=graph)
    assert r.pruned.get_submodule("c").out_channels == 8


def test_budget_one_returns_equal_copy():
    model, x = _residual()
    pruned = graphprune.prune(model, 1.0, x)
    with torch.no_grad():
        assert torch.allclose(pruned(x), model(x), atol=1e-6)


def test_plan_round_trip_on_fresh_instance(tmp_path):
    p = PATTERNS[3]
    torch.manual_seed(1)
    model = randomize_(p.build().eval())
    x = p.make_input()
    res = graphprune.prune(model, 0.5, x, return_result=True)
    res.plan.save(tmp_path / "plan.json")
    fresh = p.build().eval()
    fresh.load_state_dict(model.state_dict())
    again = graphprune.apply_plan(fresh, Plan.load(tmp_path / "plan.json"), x)
    with torch.no_grad():
        assert torch.allclose(again(x), res.model(x), atol=1e-6)
    bad = Plan({"no.such.group:0": (0,)})
    with pytest.raises(PlanError, match="no.such.group"):
        graphprune.apply_plan(fresh, bad, x)


def test_save_and_load_pruned_module(tmp_path):
    from graphprune.export import load_pruned, save_pruned

    model, x = _residual()
    res = graphprune.prune(model, 0.4, x, return_result=True)
    path = save_pruned(res.model, tmp_path / "m.pt", res.plan)
    loaded = load_pruned(path, trusted=True)  # our own file: unpickling is safe here
    with torch.no_grad():
        assert torch.equal(loaded(x), res.model(x))
    assert (tmp_path / "m.pt.plan.json").exists()


def test_report_numbers_are_measured():
    from graphprune.testing import counted_macs

    model, x = _residual()
    res = graphprune.prune(model, 0.5, x, return_result=True)
    assert res.report.macs == counted_macs(res.model, (x,))
    assert res.report.dense_macs == counted_macs(model, (x,))
    assert 0.48 <= res.report.macs_ratio <= 0.5
    assert "MACs" in str(res.report)


def test_non_module_input_is_refused():
    with pytest.raises(TypeError, match="nn.Module"):
        graphprune.prune(lambda x: x, 0.5, torch.randn(1))
    with pytest.raises(TypeError, match="example_inputs"):
        graphprune.prune(nn.Linear(2, 2), 0.5, [])


@pytest.mark.parametrize("output", ["Module", "", None, 1])
def test_output_option_is_checked_up_front(output):
    model, x = _residual()
    with pytest.raises(ValueError, match=r"output must be one of \('auto', 'module', 'graph'\)"):
        graphprune.prune(model, 0.5, x, output=output)


def test_output_graph_returns_the_graph_module_and_says_so():
    model, x = _residual()
    result = graphprune.prune(model, 0.5, x, output="graph", return_result=True)
    assert isinstance(result.model, torch.fx.GraphModule)
    assert result.report.output_kind == "graph" and "output='graph'" in result.report.output_reason
    auto = graphprune.prune(model, 0.5, x, return_result=True)
    assert type(auto.model) is type(model) and auto.report.output_kind == "module" and not auto.report.output_reason
    assert "own class" in str(auto.report)
    with torch.no_grad():
        torch.testing.assert_close(auto.model(x), result.model(x), rtol=0, atol=0)


def test_output_module_is_refused_for_the_training_time_learners():
    model, x = _residual()
    with pytest.raises(graphprune.InPlaceError, match="output='graph' or 'auto'"):
        graphprune.prune(model, 0.5, x, strategy="slimming", train_data=[(x, torch.zeros(2))], output="module")

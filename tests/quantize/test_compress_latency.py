"""``compress`` under a measured-latency budget: plan under the time proxy, measure, re-plan (deterministic fake
measure, no timing)."""
import pytest
import torch

import graphprune
from graphprune.budget import BudgetError
from graphprune.latency import Target
from graphprune.quantize import QuantBudget, QuantCost, compress
from graphprune.quantize.cost import INT8_MAC_COST
from graphprune.search.latency_budget import CLOSE, TOLERANCE
from quant_nets import EXAMPLE, small_net


class FakeMeasure:
    """time = fp32 MACs + ``int8_cost`` · int8 MACs + ``overhead`` · dense MACs (ns): int8 is dearer than the
    proxy thinks and every model pays a fixed overhead, so the first plan misses and the loop must re-plan."""

    target = Target()

    def __init__(self, int8_cost: float = 0.8, overhead: float = 0.15):
        self.int8_cost, self.overhead = int8_cost, overhead
        self.calls: list[float] = []
        self.dense_macs = graphprune.inspect(small_net(), EXAMPLE).cost().macs
        self.dense = self.ms(small_net(), _fp32(small_net()))

    def ms(self, module, bits) -> float:
        cost = QuantCost(graphprune.inspect(module, EXAMPLE))
        full = cost.graph.full_keep()
        total = cost.time_proxy(full, {layer.name: 32 for layer in cost.layers})
        int8_macs = (total - cost.time_proxy(full, bits)) / (1 - INT8_MAC_COST)
        return 1e-6 * (total - int8_macs + self.int8_cost * int8_macs + self.overhead * self.dense_macs)

    def dense_ms(self, dense) -> float:
        return self.dense  # the reference is the dense fp32 model (the tests compress small_net())

    def pair_ms(self, dense, pruned, bits):
        got = self.ms(pruned, bits)
        self.calls.append(got / self.dense)
        return self.dense, got


def _fp32(module) -> dict[str, int]:
    return {layer.name: 32 for layer in QuantCost(graphprune.inspect(module, EXAMPLE)).layers}


def _compress(budget, calib, tmp_path, measure, **kw):
    return graphprune.compress(small_net(), budget, EXAMPLE, calib_data=calib, out=tmp_path / "m.onnx",
                               latency_measure=measure, exporter="torchscript",
                               **{"strategy": "uniform", "round_to": 1, **kw})


def test_a_latency_ratio_is_met_by_measuring_and_replanning(calib, tmp_path):
    measure = FakeMeasure()
    result = _compress(QuantBudget.latency(0.5), calib, tmp_path, measure)
    outcome = result.report.latency
    assert outcome.met and outcome.iterations >= 2  # the proxy's first plan is off: int8 dearer, overhead
    assert result.report.latency_ratio <= 0.5 * (1 + TOLERANCE)
    # in the window, or the plans next to the goal were both measured (uniform widths move in steps)
    assert result.report.latency_ratio >= 0.5 * (1 - CLOSE) or "gap around the goal" in outcome.stop
    ratios = sorted(c.measured_ms / c.measured_dense_ms for c in outcome.checks)
    assert any(r > 0.5 * (1 + TOLERANCE) for r in ratios)
    # the returned model is the plan measured: measuring it again gives the reported ratio
    dense = measure.dense
    assert measure.ms(result.model, result.bitplan.weight_bits) / dense == pytest.approx(result.report.latency_ratio)
    text = str(result.report)
    assert "plan 1" in text and "<- returned" in text and "met after" in text


def test_an_ms_budget_and_a_joint_search_meet_it(calib, tmp_path):
    measure = FakeMeasure(int8_cost=0.6, overhead=0.05)
    dense = measure.dense
    scores = []

    def eval_fn(model):
        scores.append(1)
        with torch.no_grad():
            return float(-sum(p.abs().sum() for p in model.parameters()))

    result = _compress(QuantBudget.ms(0.6 * dense), calib, tmp_path, measure, quantize="mixed",
                       strategy="joint", eval_fn=eval_fn, search_options={"population": 3, "generations": 1})
    c = result.report.latency.final
    assert result.report.latency.met and c.measured_ms <= 0.6 * dense * (1 + TOLERANCE)
    # candidates are scored once across re-plans (the plans share one memo)
    assert result.report.candidates == len(scores) - 1  # minus the final report's eval_fn on the result


def test_an_unreachable_latency_budget_is_refused_with_the_measured_floor(calib, tmp_path):
    measure = FakeMeasure(overhead=0.3)  # no model runs in under 0.3 of the dense time
    with pytest.raises(BudgetError, match=r"cannot go lower.*|not met"):
        _compress(QuantBudget.latency(0.1), calib, tmp_path, measure)
    assert min(measure.calls) > 0.1 * (1 + TOLERANCE)


def test_latency_budgets_validate_their_numbers():
    assert QuantBudget.latency(0.4).needs_latency and QuantBudget.ms(2.0).describe() == "2.000 ms"
    with pytest.raises(BudgetError, match="ratio must be in"):
        QuantBudget.latency(1.5)
    with pytest.raises(BudgetError, match="must be positive"):
        QuantBudget.ms(-1)
    with pytest.raises(BudgetError, match="not an absolute limit"):
        QuantBudget("bops", limit=3.0)


def test_a_non_ort_target_is_refused(calib, tmp_path):
    with pytest.raises(ValueError, match="not ort-cpu"):
        graphprune.compress(small_net(), QuantBudget.latency(0.5), EXAMPLE, calib_data=calib,
                            out=tmp_path / "m.onnx", target=Target("torch-cpu"), strategy="uniform")


def test_a_loose_latency_budget_quantises_without_pruning(calib, tmp_path):
    measure = FakeMeasure(int8_cost=0.8, overhead=0.05)  # the whole model in int8: about 0.85 of dense fp32
    result = _compress(QuantBudget.latency(0.95), calib, tmp_path, measure)
    assert result.report.latency.met and result.report.params_ratio == 1.0
    assert "nothing to prune" in result.report.latency.stop


def test_latency_budget_with_int4_layers_is_refused():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    x = torch.randn(1, 4, 4)
    with pytest.raises(BudgetError, match="int8 / fp32 plans only"):
        compress(model, QuantBudget.latency(0.5), x, quantize="int4", calib_data=[x])

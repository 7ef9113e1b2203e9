"""``graphprune.compress`` end to end: budget met, ORT int8 == simulation, the plan re-applies."""
import numpy as np
import pytest
import torch

import graphprune
from graphprune.quantize import BitPlan, QuantBudget
from graphprune.quantize.ort_ptq import ort_run
from quant_nets import EXAMPLE, small_net


def _agreement(model, data) -> float:
    """A stand-in eval_fn: agreement of the candidate's argmax with the dense model's."""
    x = torch.cat(data)
    with torch.no_grad():
        return float((model(x).argmax(1) == small_net()(x).argmax(1)).float().mean())


def test_joint_mixed_compress_and_replay(net, calib, tmp_path):
    result = graphprune.compress(net, 0.2, EXAMPLE, quantize="mixed", calib_data=calib,
                                 eval_fn=lambda m: _agreement(m, calib), out=tmp_path / "m.onnx",
                                 search_options={"population": 3, "generations": 1})
    report = result.report
    assert report.size_ratio <= 0.2 and report.strategy == "joint" and report.candidates >= 3
    assert report.ort_vs_fakequant_steps <= 2.0
    assert report.int8_onnx_bytes < report.fp32_onnx_bytes
    path = result.bitplan.save(tmp_path / "plan.json")

    again = graphprune.apply_bitplan(small_net(), BitPlan.load(path), EXAMPLE, calib_data=calib,
                                     out=tmp_path / "again.onnx")
    x = torch.randn(4, 1, 12, 12)
    np.testing.assert_array_equal(ort_run(again.onnx.int8_path, x), ort_run(result.onnx.int8_path, x))
    for a, b in zip(again.model.state_dict().values(), result.model.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_int8_global_meets_a_bops_budget(net, calib, tmp_path):
    result = graphprune.compress(net, QuantBudget.bops(0.03), EXAMPLE, calib_data=calib, out=tmp_path / "m.onnx")
    assert result.report.bops_ratio <= 0.03 and result.report.layers_fp32 == 0
    assert result.report.strategy == "global" and result.report.score is None


@pytest.mark.parametrize("kwargs, match", [
    ({"quantize": "int2"}, "quantize must be one of"),
    ({"quantize": "mixed"}, "pass eval_fn"),
    ({"strategy": "joint"}, "pass eval_fn"),
    ({"calib_data": []}, "needs calib_data"),
])
def test_bad_arguments_are_refused(net, calib, kwargs, match):
    with pytest.raises(ValueError, match=match):
        graphprune.compress(net, 0.2, EXAMPLE, **{"calib_data": calib, **kwargs})


def test_rl_strategy_compresses_within_budget(net, calib, tmp_path):
    pytest.importorskip("torch_geometric")
    result = graphprune.compress(net, QuantBudget.size(0.18), EXAMPLE, quantize="mixed", calib_data=calib,
                                 eval_fn=lambda m: _agreement(m, calib), strategy="rl", out=tmp_path / "m.onnx",
                                 search_options={"episodes": 4, "batch_episodes": 2})
    assert result.report.strategy == "rl" and result.report.size_ratio <= 0.18
    assert result.report.ort_vs_fakequant_steps <= 2.0


def test_a_model_without_conv_or_linear_modules_is_refused(calib):
    class Functional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(4, 1, 3, 3))

        def forward(self, x):
            return torch.nn.functional.conv2d(x, self.w)

    with pytest.raises(ValueError, match="no Conv / Linear module calls"):
        graphprune.compress(Functional(), 0.5, EXAMPLE, calib_data=calib)

"""BatchNorm recalibration: statistics re-estimated on calibration data; 0-bit and pruned channels stay alike."""
import numpy as np
import torch

import graphprune
from graphprune.passes import rewrite
from graphprune.quantize import BitPlan, zero_bit_model
from graphprune.quantize.bn_recal import recalibrate_bn
from graphprune.quantize.ort_ptq import ort_run
from quant_nets import EXAMPLE, small_net


def test_running_statistics_become_the_calibration_statistics(net, calib):
    fixed = recalibrate_bn(net, calib)
    stem_conv, stem_bn = fixed.stem[0], fixed.stem[1]
    with torch.no_grad():
        outs = [stem_conv(x) for x in calib]
    # momentum=None: the average of the per-batch means and of the per-batch unbiased variances
    want_mean = torch.stack([o.mean((0, 2, 3)) for o in outs]).mean(0)
    want_var = torch.stack([o.transpose(0, 1).flatten(1).var(1) for o in outs]).mean(0)
    torch.testing.assert_close(stem_bn.running_mean, want_mean, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(stem_bn.running_var, want_var, atol=1e-5, rtol=1e-4)
    assert not stem_bn.training and stem_bn.momentum == net.stem[1].momentum
    assert not torch.equal(net.stem[1].running_mean, stem_bn.running_mean), "the input model was modified"


def test_zero_bit_and_pruned_models_stay_the_same_after_recalibration(net, calib):
    graph = graphprune.inspect(net, EXAMPLE)
    rng = np.random.default_rng(0)
    keep = rng.random(graph.n_units) > 0.35
    for g in graph.groups:
        keep[g.units.start] = True
    pruned = recalibrate_bn(rewrite(graph, keep), calib)
    zero_bit = recalibrate_bn(zero_bit_model(graph, keep), calib)
    x = torch.randn(8, 1, 12, 12)
    torch.testing.assert_close(zero_bit(x), pruned(x), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(pruned(x), rewrite(graph, keep)(x)), "recalibration changed nothing"


def test_compress_recalibrates_and_the_plan_replays_it(net, calib, tmp_path):
    result = graphprune.compress(net, 0.2, EXAMPLE, calib_data=calib, strategy="uniform", recalibrate_bn=True,
                                 out=tmp_path / "m.onnx")
    assert result.report.ort_vs_fakequant_steps <= 2.0
    plan = BitPlan.load(result.bitplan.save(tmp_path / "plan.json"))
    assert plan.info["recalibrate_bn"] is True
    again = graphprune.apply_bitplan(small_net(), plan, EXAMPLE, calib_data=calib, out=tmp_path / "again.onnx")
    x = torch.randn(4, 1, 12, 12)
    np.testing.assert_array_equal(ort_run(again.onnx.int8_path, x), ort_run(result.onnx.int8_path, x))

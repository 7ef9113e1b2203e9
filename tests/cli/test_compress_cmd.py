"""``graphprune compress``: runs, writes the int8 file and the plan, and a replayed plan gives the same file."""
import json

import torch

from graphprune.cli import main


def test_compress_writes_int8_onnx_and_a_replayable_plan(tmp_path, capsys):
    out, plan = tmp_path / "m.int8.onnx", tmp_path / "plan.json"
    common = ["models:lenet5", "--data", "fashion_mnist", "--data-samples", "64"]
    assert main(["compress", *common, "--budget", "0.15", "--out", str(out), "--plan", str(plan)]) == 0
    printed = capsys.readouterr().out
    assert "0.150 of dense fp32 size" in printed and "ORT vs sim" in printed and "ORT latency" in printed
    assert json.loads(plan.read_text())["format"] == "graphprune.bitplan/1"
    again = tmp_path / "again.int8.onnx"
    assert main(["compress", *common, "--apply-plan", str(plan), "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_bad_budget_and_option_are_one_line_errors(tmp_path, capsys):
    assert main(["compress", "models:lenet5", "--data", "fashion_mnist", "--budget", "2"]) == 2
    assert "fraction in (0, 1]" in capsys.readouterr().err
    assert main(["compress", "models:lenet5", "--data", "fashion_mnist", "--strategy-option", "colour=3",
                 "--out", str(tmp_path / "m.onnx")]) == 2
    assert "unknown --strategy-option" in capsys.readouterr().err


def test_recalibrate_bn_flag_is_saved_in_the_plan_and_replayed(tmp_path):
    out, plan = tmp_path / "m.int8.onnx", tmp_path / "plan.json"
    common = ["models:resnet20", "--data", "fashion_mnist", "--data-samples", "32", "--time-rounds", "0"]
    assert main(["compress", *common, "--budget", "0.3", "--recalibrate-bn", "--out", str(out),
                 "--plan", str(plan)]) == 0
    assert json.loads(plan.read_text())["info"]["recalibrate_bn"] is True
    again = tmp_path / "again.int8.onnx"
    assert main(["compress", *common, "--apply-plan", str(plan), "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_quantize_int4_writes_matmulnbits_and_a_plan_with_its_scheme(tmp_path, capsys):
    import onnx

    out, plan = tmp_path / "m.int4.onnx", tmp_path / "plan.json"
    assert main(["compress", "models:lenet5", "--data", "fashion_mnist", "--data-samples", "32", "--time-rounds", "0",
                 "--quantize", "int4", "--int4-block-size", "16", "--int4-symmetric", "--budget", "0.2",
                 "--out", str(out), "--plan", str(plan)]) == 0
    assert " int4" in capsys.readouterr().out
    assert json.loads(plan.read_text())["int4"] == {"block_size": 16, "symmetric": True, "accuracy_level": 0}
    assert any(n.op_type == "MatMulNBits" for n in onnx.load(str(out)).graph.node)
    assert main(["compress", "models:lenet5", "--data", "fashion_mnist", "--int4-block-size", "24",
                 "--out", str(tmp_path / "x.onnx")]) == 2
    assert "power of two >= 16" in capsys.readouterr().err


class _FakeOrtMeasure:
    """Stands in for the ORT timing of ``compress`` (no timing in tests): time = MACs, int8 layers at 0.8."""

    seen = []

    def __init__(self, target, example_inputs, calib, exporter):
        self.target = target
        _FakeOrtMeasure.seen.append(target)

    def _ms(self, module, bits):
        import graphprune
        from graphprune.quantize import QuantCost

        cost = QuantCost(graphprune.inspect(module, torch.zeros(1, 1, 28, 28)))
        full = cost.graph.full_keep()
        fp32 = cost.time_proxy(full, {layer.name: 32 for layer in cost.layers})
        return 1e-6 * (fp32 - 0.4 * (fp32 - cost.time_proxy(full, bits)))

    def dense_ms(self, dense):
        return self._ms(dense, {"": 32})

    def pair_ms(self, dense, pruned, bits):
        return self.dense_ms(dense), self._ms(pruned, bits)


def test_latency_budget_reaches_compress_with_its_target(tmp_path, capsys, monkeypatch):
    import sys

    import graphprune.quantize  # noqa: F401  (the package's ``compress`` attribute is the function: use the module)

    monkeypatch.setattr(sys.modules["graphprune.quantize.compress"], "OrtInt8Measure", _FakeOrtMeasure)
    out = tmp_path / "m.int8.onnx"
    assert main(["compress", "models:lenet5", "--data", "fashion_mnist", "--data-samples", "32", "--latency", "0.5",
                 "--threads", "2", "--batch", "4", "--time-rounds", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "0.500 of dense fp32 latency" in printed and "plan 1" in printed and "<- returned" in printed
    assert _FakeOrtMeasure.seen[-1].threads == 2 and _FakeOrtMeasure.seen[-1].batch == 4


def test_latency_and_size_budgets_together_are_refused(capsys):
    assert main(["compress", "models:lenet5", "--data", "fashion_mnist", "--budget", "0.2", "--latency", "0.5"]) == 2
    assert "--budget and --latency are different budgets" in capsys.readouterr().err
    assert main(["compress", "models:lenet5", "--data", "fashion_mnist", "--latency", "1.5"]) == 2
    assert "fraction in (0, 1]" in capsys.readouterr().err

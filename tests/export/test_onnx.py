"""ONNX export of pruned models, ONNX Runtime agreement and latency measurement."""
import numpy as np
import pytest
import torch

import graphprune
from graphprune.export import ExportError, check_onnx, export_onnx, ort_latency
from graphprune.export.report import run_job
from graphprune.testing import PATTERNS, randomize_


def test_export_check_and_latency(tmp_path):
    p = PATTERNS[0]
    model, x = randomize_(p.build().eval()), p.make_input()
    pruned = graphprune.prune(model, 0.5, x)
    path = export_onnx(pruned, x, tmp_path / "m.onnx")
    check = check_onnx(pruned, x, path)
    assert check.max_abs_diff < 1e-4
    assert 0 < ort_latency(path, x, runs=3, warmup=1) < 5


def test_export_keeps_training_flag(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5)).train()
    export_onnx(model, torch.randn(2, 3), tmp_path / "d.onnx")
    assert model.training


def test_export_failure_names_both_exporters(tmp_path):
    class NoOnnx(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x).real  # not exportable by either exporter

    with pytest.raises(ExportError, match="dynamo exporter: .* torchscript exporter: ") as info:
        export_onnx(NoOnnx(), torch.randn(3, 3), tmp_path / "x.onnx")
    assert "linalg_eig" in str(info.value).split("| torchscript")[0]  # the root cause, not "step 3/3 failed"


def test_run_job_report(tmp_path):
    p = PATTERNS[6]
    model, x = randomize_(p.build().eval()), p.make_input()
    pruned, report, plan = run_job("flatten_linear", model, x, 0.5, onnx_path=str(tmp_path / "j.onnx"),
                                   latency_runs=3)
    assert report.onnx_max_abs_diff < 1e-4
    assert report.dense_latency_ms > 0 and report.pruned_latency_ms > 0
    assert report.macs_ratio <= 0.5
    text = report.table()
    assert "ORT latency" in text and "ideal" in text
    assert '"macs_ratio"' in report.to_json()
    assert report.onnx_exporter == "dynamo" and report.onnx_export_seconds > 0 and report.onnx_opset == 18
    assert "ONNX export" in text and "dynamo exporter, opset 18" in text
    assert '"onnx_export_seconds"' in report.to_json()


def test_run_job_hints_at_round_to_for_odd_widths(tmp_path):
    import models

    model, x = models.build("resnet20", num_classes=10, in_channels=1).eval(), torch.zeros(1, 1, 28, 28)
    _, report, _ = run_job("r20", model, x, 0.7, onnx_path=str(tmp_path / "a.onnx"), latency_runs=2, round_to=1)
    assert any("not multiples of 8" in n and "round_to=8" in n for n in report.notes)
    pruned, report, _ = run_job("r20", model, x, 0.7, onnx_path=str(tmp_path / "b.onnx"), latency_runs=2,
                                round_to=8)
    assert not any("multiples of 8" in n for n in report.notes)
    assert all(m.out_channels % 8 == 0 for m in pruned.modules() if isinstance(m, torch.nn.Conv2d))


class _FrozenBN(torch.nn.Module):
    """A model in train mode whose BatchNorm the user froze in eval mode."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.drop = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.1)

    def forward(self, x):
        return self.drop(self.bn(self.conv(x)))


def test_export_and_check_keep_every_module_flag(tmp_path):
    model = _FrozenBN().train()
    model.bn.eval()
    flags = {name: m.training for name, m in model.named_modules()}
    x = torch.randn(1, 3, 6, 6)
    path = export_onnx(model, x, tmp_path / "bn.onnx")
    assert {name: m.training for name, m in model.named_modules()} == flags
    check_onnx(model, x, path)
    assert {name: m.training for name, m in model.named_modules()} == flags


class _TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head1, self.head2 = torch.nn.Linear(5, 6), torch.nn.Linear(6, 3), torch.nn.Linear(6, 2)

    def forward(self, x):
        h = self.body(x).relu()
        return self.head1(h), self.head2(h)


def _scale_initializer(path, name_part: str, factor: float) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    hits = [init for init in model.graph.initializer if name_part in init.name]
    assert hits, [init.name for init in model.graph.initializer]
    for init in hits:
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * factor, init.name))
    onnx.save(model, str(path))


def test_check_onnx_compares_every_output(tmp_path):
    model, x = _TwoHeads().eval(), torch.randn(2, 5)
    path = export_onnx(model, x, tmp_path / "two.onnx")
    good = check_onnx(model, x, path)
    assert len(good.output_diffs) == 2 and good.max_abs_diff < 1e-5
    _scale_initializer(path, "head2.weight", 100.0)  # the second head now disagrees, the first does not
    bad = check_onnx(model, x, path)
    assert bad.max_rel_diff > 10 and bad.max_abs_diff > 0.1
    first, second = bad.output_diffs
    assert bad.worst_output == second and bad.output_diffs[first][0] < 1e-5


def test_check_onnx_dict_and_nested_outputs(tmp_path):
    class Dict(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(3, 4), torch.nn.Linear(3, 2)

        def forward(self, x):
            return {"b": self.b(x), "pair": (self.a(x), x.sum(1))}

    model, x = Dict().eval(), torch.randn(2, 3)
    check = check_onnx(model, x, export_onnx(model, x, tmp_path / "d.onnx"))
    assert len(check.output_diffs) == 3 and check.max_abs_diff < 1e-5  # shapes (2,2), (2,4), (2,): order matters


def test_check_onnx_refuses_a_file_with_other_outputs(tmp_path):
    single = torch.nn.Linear(5, 6).eval()
    x = torch.randn(2, 5)
    path = export_onnx(single, x, tmp_path / "one.onnx")
    with pytest.raises(ExportError, match=r"1 outputs .* returns 2 tensors"):
        check_onnx(_TwoHeads().eval(), x, path)


def test_check_onnx_shape_mismatch_is_not_broadcast(tmp_path):
    class Row(torch.nn.Module):
        def forward(self, x):
            return x[:1] * 0  # (1, 4): broadcasting against (3, 4) would hide the difference

    class Full(torch.nn.Module):
        def forward(self, x):
            return x * 0

    x = torch.randn(3, 4)
    check = check_onnx(Full(), x, export_onnx(Row(), x, tmp_path / "row.onnx"))
    assert check.max_abs_diff == float("inf")


def test_failed_export_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old model")

    def half_write_then_fail(model, args, f, **kwargs):
        open(f, "wb").write(b"half")  # e.g. a full disk or a crash mid-write
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch.onnx, "export", half_write_then_fail)
    with pytest.raises(ExportError, match="disk full"):
        export_onnx(torch.nn.Linear(2, 2), torch.randn(1, 2), target)
    assert target.read_bytes() == b"old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_dynamo_exporter_is_the_default(tmp_path):
    import onnx

    model, x = _TwoHeads().eval(), torch.randn(2, 5)
    path = export_onnx(model, x, tmp_path / "sub" / "m.onnx")
    assert path == tmp_path / "sub" / "m.onnx" and path.exists()
    assert path.exporter == "dynamo" and path.fallback_reason == "" and path.seconds > 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.onnx"]  # weights inside, no stray .data
    proto = onnx.load(str(path))
    assert path.opset == 18 and proto.opset_import[0].version == 18
    # no dynamic axes, as with the TorchScript exporter before: the batch dim is fixed to the example's
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [2, 5]
    assert check_onnx(model, x, path).max_abs_diff < 1e-5


@pytest.mark.parametrize("front_end", ["fx", "export"])
def test_pruned_graphs_of_both_front_ends_export_with_dynamo(tmp_path, front_end):
    p = next(p for p in PATTERNS if p.name == "residual")
    model, x = randomize_(p.build().eval()), p.make_input()
    pruned = graphprune.prune(model, 0.5, x, front_end=front_end)
    path = export_onnx(pruned, x, tmp_path / "p.onnx")
    assert path.exporter == "dynamo", path.fallback_reason
    check = check_onnx(pruned, x, path)
    assert check.max_rel_diff < 1e-5 and len(check.output_diffs) == 1


def test_torchscript_fallback_is_recorded(tmp_path, monkeypatch):
    real_export = torch.onnx.export
    calls = []

    def no_dynamo(*args, dynamo=True, **kwargs):
        calls.append(dynamo)
        if dynamo:
            raise RuntimeError("dynamo exporter unavailable\nsecond line")
        return real_export(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    model, x = _TwoHeads().eval(), torch.randn(2, 5)
    with pytest.warns(UserWarning, match="torchscript exporter because dynamo exporter: RuntimeError"):
        path = export_onnx(model, x, tmp_path / "ts.onnx")
    assert calls == [True, False]  # dynamo first, then the fallback
    assert path.exporter == "torchscript" and path.opset == 18
    assert path.fallback_reason == "dynamo exporter: RuntimeError: dynamo exporter unavailable"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ts.onnx"]
    check = check_onnx(model, x, path)
    assert len(check.output_diffs) == 2 and check.max_abs_diff < 1e-5


def test_one_exporter_on_request(tmp_path, monkeypatch):
    model, x = _TwoHeads().eval(), torch.randn(2, 5)
    path = export_onnx(model, x, tmp_path / "ts.onnx", opset=17, exporter="torchscript")
    assert path.exporter == "torchscript" and path.opset == 17 and path.fallback_reason == ""
    assert check_onnx(model, x, path).max_abs_diff < 1e-5

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(torch.onnx, "export", fail)
    with pytest.raises(ExportError, match="dynamo exporter: RuntimeError: boom$"):  # no fallback was tried
        export_onnx(model, x, tmp_path / "d.onnx", exporter="dynamo")
    with pytest.raises(ValueError, match="exporter must be one of"):
        export_onnx(model, x, tmp_path / "d.onnx", exporter="legacy")

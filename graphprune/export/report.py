"""The end-to-end job behind ``graphprune prune``: prune, export both models, check, time, report."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from ..latency.model import Target
from ..latency.runners import measure_ms
from ..result import PruneReport
from ..trace import normalize_inputs
from .onnx import check_onnx, export_onnx

__all__ = ["JobReport", "run_job"]


@dataclass
class JobReport:
    """What ``graphprune prune`` did: the prune's own report plus the export, check and timing of the job.

    Attributes:
        model: the model spec the job was given.
        prune: the ``PruneReport`` of ``graphprune.prune`` (costs, widths, front end, latency re-plans).
        onnx_exporter / onnx_export_seconds / onnx_opset: which exporter wrote ``onnx_path`` (``"dynamo"``, or
            ``"torchscript"`` as the fallback), its wall time and opset; ``onnx_fallback_reason`` says why dynamo
            did not write it (empty when it did).
        dense_latency_ms / pruned_latency_ms: medians on ONNX Runtime CPU, dense and pruned timed interleaved.
    """

    model: str
    prune: PruneReport
    onnx_path: str | None = None
    onnx_max_abs_diff: float | None = None
    onnx_exporter: str | None = None
    onnx_export_seconds: float | None = None
    onnx_opset: int | None = None
    onnx_fallback_reason: str = ""
    dense_latency_ms: float | None = None
    pruned_latency_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def macs_ratio(self) -> float:
        return self.prune.macs_ratio

    def table(self) -> str:
        r = self.prune
        rows = [("model", self.model),
                ("budget", r.budget_text or f"{r.budget:.3f} of {r.metric}"),
                ("MACs", f"{r.dense_macs / 1e6:.2f}M -> {r.macs / 1e6:.2f}M ({r.macs_ratio:.3f})"),
                ("params", f"{r.dense_params / 1e6:.3f}M -> {r.params / 1e6:.3f}M ({r.params_ratio:.3f})"),
                ("groups pruned", f"{r.groups_pruned}/{r.groups_total}"),
                ("prune time", ", ".join(f"{k} {v:.2f}s" for k, v in r.seconds.items()))]
        if r.front_end != "fx":
            rows.append(("captured by", "torch.export (torch.fx could not trace the model)"))
        if r.width_policy:
            rows.append(("widths", r.width_policy))
        if r.attention:
            rows.append(("attention", r.attention))
        if r.grouped:
            rows.append(("grouped convs", r.grouped))
        rows.append(("output", "the model's own class (rewritten in place)" if r.output_kind == "module"
                     else f"torch.fx GraphModule ({r.output_reason})"))
        if r.measured_ms is not None:
            rows.append((f"latency on {r.target}",
                         f"predicted {r.predicted_dense_ms:.3f} -> {r.predicted_ms:.3f} ms, measured "
                         f"{r.measured_dense_ms:.3f} -> {r.measured_ms:.3f} ms "
                         f"({r.measured_ms / r.measured_dense_ms:.3f}), {r.latency_iterations} plan(s)"))
        if self.onnx_path:
            rows.append(("ONNX", f"{self.onnx_path} (ORT vs PyTorch max |diff| {self.onnx_max_abs_diff:.2e})"))
            rows.append(("ONNX export", self._export_text()))
        if self.dense_latency_ms:
            speedup = self.dense_latency_ms / self.pruned_latency_ms
            rows.append(("ORT latency", f"{self.dense_latency_ms:.2f} ms -> {self.pruned_latency_ms:.2f} ms "
                                        f"(x{speedup:.2f}; ideal x{1 / self.macs_ratio:.2f}; timed interleaved)"))
        rows += [("note", n) for n in self.notes]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def _export_text(self) -> str:
        text = f"{self.onnx_exporter} exporter, opset {self.onnx_opset}, {self.onnx_export_seconds:.2f}s"
        if self.onnx_fallback_reason:
            text += f" (fallback: {self.onnx_fallback_reason[:200]})"
        return text

    def to_json(self) -> str:
        """One flat JSON object: the prune's fields, then the job's (export, check, timing, notes)."""
        job = {k: v for k, v in asdict(self).items() if k != "prune"}
        return json.dumps({**asdict(self.prune), **job, "macs_ratio": self.macs_ratio,
                           "params_ratio": self.prune.params_ratio}, indent=1, default=str)


def _width_notes(pruned: torch.nn.Module, round_to: int | str) -> list[str]:
    """A hint when pruned conv/linear widths are not multiples of 8: CPU runtimes (ONNX Runtime's vectorised
    convolutions among them) can then run a smaller network slower (bench/results/latency_rounding.md).
    None for ``round_to="auto"``: its widths come from menus the report names (``widths`` row)."""
    if round_to == "auto" or round_to % 8 == 0:
        return []
    widths = [m.out_channels for m in pruned.modules() if isinstance(m, torch.nn.Conv2d)]
    widths += [m.out_features for m in pruned.modules() if isinstance(m, torch.nn.Linear)]
    odd = sorted({w for w in widths if w % 8})
    if not odd:
        return []
    shown = ", ".join(map(str, odd[:6])) + (" …" if len(odd) > 6 else "")
    return [f"{len(odd)} layer widths are not multiples of 8 ({shown}); if latency matters, "
            "prune with round_to=8 (--round-to 8)"]


def run_job(name: str, model: torch.nn.Module, example_inputs: Any, budget, *, onnx_path: str | None = None,
            latency_runs: int = 15, threads: int = 1, **prune_kw: Any) -> tuple[torch.nn.Module, JobReport, Any]:
    """Prune ``model``; export, check and time it with ONNX Runtime if ``onnx_path`` (``latency_runs`` interleaved
    repeats); return (pruned, report, plan)."""
    from ..api import prune

    steps = tqdm(total=3 if onnx_path else 1, desc=f"graphprune {name}", unit="stage")
    steps.set_postfix_str("prune")
    result = prune(model, budget, example_inputs, return_result=True, **prune_kw)
    steps.update()
    report = JobReport(name, result.report)
    if onnx_path:
        steps.set_postfix_str("onnx export + check")
        path = export_onnx(result.model, example_inputs, onnx_path)
        report.onnx_path = str(path)
        report.onnx_exporter, report.onnx_export_seconds = path.exporter, path.seconds
        report.onnx_opset, report.onnx_fallback_reason = path.opset, path.fallback_reason
        report.onnx_max_abs_diff = check_onnx(result.model, example_inputs, path, threads).max_abs_diff
        steps.update()
        steps.set_postfix_str("latency")
        # NOTE: interleaved (A B A B …) in one process: a busy machine slows both alike, the ratio holds
        target = Target("ort-cpu", threads, normalize_inputs(example_inputs)[0].shape[0])
        report.dense_latency_ms, report.pruned_latency_ms = measure_ms([model, result.model], example_inputs, target,
                                                                       repeats=latency_runs)
        steps.update()
        report.notes += _width_notes(result.model, prune_kw.get("round_to", "auto"))
    steps.close()
    return result.model, report, result.plan

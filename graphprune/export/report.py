"""The end-to-end job behind ``graphprune prune``: prune, export both models, check, time, report."""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .onnx import check_onnx, export_onnx, ort_latency

__all__ = ["JobReport", "run_job"]


@dataclass
class JobReport:
    model: str
    budget: float
    metric: str
    dense_macs: float
    pruned_macs: float
    dense_params: float
    pruned_params: float
    groups_pruned: int
    groups_total: int
    prune_seconds: dict[str, float]
    onnx_path: str | None = None
    onnx_max_abs_diff: float | None = None
    dense_latency_ms: float | None = None
    pruned_latency_ms: float | None = None
    notes: list[str] = field(default_factory=list)
    width_policy: str = ""
    front_end: str = "fx"
    target: str | None = None
    predicted_dense_ms: float | None = None
    predicted_ms: float | None = None
    measured_dense_ms: float | None = None
    measured_ms: float | None = None
    latency_iterations: int = 0
    budget_text: str = ""

    @property
    def macs_ratio(self) -> float:
        return self.pruned_macs / self.dense_macs

    def table(self) -> str:
        rows = [("model", self.model),
                ("budget", self.budget_text or f"{self.budget:.3f} of {self.metric}"),
                ("MACs", f"{self.dense_macs / 1e6:.2f}M -> {self.pruned_macs / 1e6:.2f}M ({self.macs_ratio:.3f})"),
                ("params", f"{self.dense_params / 1e6:.3f}M -> {self.pruned_params / 1e6:.3f}M "
                           f"({self.pruned_params / self.dense_params:.3f})"),
                ("groups pruned", f"{self.groups_pruned}/{self.groups_total}"),
                ("prune time", ", ".join(f"{k} {v:.2f}s" for k, v in self.prune_seconds.items()))]
        if self.front_end != "fx":
            rows.append(("captured by", "torch.export (torch.fx could not trace the model)"))
        if self.width_policy:
            rows.append(("widths", self.width_policy))
        if self.measured_ms is not None:
            rows.append((f"latency on {self.target}",
                         f"predicted {self.predicted_dense_ms:.3f} -> {self.predicted_ms:.3f} ms, measured "
                         f"{self.measured_dense_ms:.3f} -> {self.measured_ms:.3f} ms "
                         f"({self.measured_ms / self.measured_dense_ms:.3f}), {self.latency_iterations} plan(s)"))
        if self.onnx_path:
            rows.append(("ONNX", f"{self.onnx_path} (ORT vs PyTorch max |diff| {self.onnx_max_abs_diff:.2e})"))
        if self.dense_latency_ms:
            speedup = self.dense_latency_ms / self.pruned_latency_ms
            rows.append(("ORT latency", f"{self.dense_latency_ms:.2f} ms -> {self.pruned_latency_ms:.2f} ms "
                                        f"(x{speedup:.2f}; ideal x{1 / self.macs_ratio:.2f})"))
        rows += [("note", n) for n in self.notes]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "macs_ratio": self.macs_ratio}, indent=1)


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
            latency_runs: int = 20, threads: int = 1, **prune_kw: Any) -> tuple[torch.nn.Module, JobReport, Any]:
    """Prune ``model``; export, check and time it with ONNX Runtime if ``onnx_path``; return (pruned, report, plan)."""
    from ..api import prune

    steps = tqdm(total=3 if onnx_path else 1, desc=f"graphprune {name}", unit="stage")
    steps.set_postfix_str("prune")
    result = prune(model, budget, example_inputs, return_result=True, **prune_kw)
    steps.update()
    r = result.report
    report = JobReport(name, r.budget, r.metric, r.dense_macs, r.macs, r.dense_params, r.params,
                       r.groups_pruned, r.groups_total, r.seconds, width_policy=r.width_policy, target=r.target,
                       predicted_dense_ms=r.predicted_dense_ms, predicted_ms=r.predicted_ms,
                       measured_dense_ms=r.measured_dense_ms, measured_ms=r.measured_ms,
                       latency_iterations=r.latency_iterations, budget_text=r.budget_text, front_end=r.front_end)
    if onnx_path:
        steps.set_postfix_str("onnx export + check")
        path = export_onnx(result.model, example_inputs, onnx_path)
        report.onnx_path = str(path)
        report.onnx_max_abs_diff = check_onnx(result.model, example_inputs, path, threads).max_abs_diff
        steps.update()
        steps.set_postfix_str("latency")
        with tempfile.TemporaryDirectory() as tmp:
            dense_path = export_onnx(model, example_inputs, Path(tmp) / "dense.onnx")
            report.dense_latency_ms = 1e3 * ort_latency(dense_path, example_inputs, latency_runs, threads=threads)
        report.pruned_latency_ms = 1e3 * ort_latency(path, example_inputs, latency_runs, threads=threads)
        steps.update()
        report.notes += _width_notes(result.model, prune_kw.get("round_to", "auto"))
    steps.close()
    return result.model, report, result.plan

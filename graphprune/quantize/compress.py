"""``graphprune.compress``: prune and quantise in one call — trace, importance, joint allocation, rewrite,
fake-quant check, int8 ONNX.

    result = graphprune.compress(model, 0.15, x, quantize="mixed", calib_data=batches, eval_fn=accuracy)
    result.bitplan.save("plan.json")          # channels + bit-widths, re-applied by apply_bitplan

Stages, top to bottom: capture and dependency graph (``inspect``) → unit scores (the pruning criterion) →
allocation under a size / BOPs budget (``joint.py``) → rewrite (``passes.rewrite``) → fake-quant simulation
(``fakequant.py``) → ONNX export and static int8 PTQ (``ort_ptq.py``) → report.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.fx as fx

from ..apply import apply_plan
from ..budget import BudgetError
from ..evaluate import take_batches
from ..inspect_model import inspect
from ..latency.model import Target
from ..passes import rewrite
from ..search.registry import unit_scores
from ..trace import normalize_inputs
from .bitplan import BitPlan
from .bn_recal import recalibrate_bn as recalibrate
from .cost import QuantBudget, QuantCost
from .int4 import INT4, Int4Scheme
from .fakequant import as_graph_module, batch_inputs, fake_quant_model, zero_bit_model
from .joint import JointConfig, JointSpace, joint_search
from .latency import LatencyMeasure, OrtInt8Measure, latency_target, meet_compress_latency, describe_latency
from .ort_ptq import QuantizedOnnx, interleaved_ms, ort_run, quantize_onnx

__all__ = ["compress", "apply_bitplan", "CompressResult", "CompressReport", "QUANTIZE_MODES", "COMPRESS_STRATEGIES"]

QUANTIZE_MODES = ("int8", "mixed", "int4")
COMPRESS_STRATEGIES = ("global", "uniform", "joint", "rl")


@dataclass
class CompressReport:
    """What ``compress`` did, in numbers (sizes predicted by ``cost.py`` and measured on disk)."""

    budget: str
    quantize: str
    strategy: str
    size_ratio: float            # predicted compressed size / dense fp32 size
    bops_ratio: float
    macs_ratio: float
    params_ratio: float
    layers_int8: int
    layers_fp32: int
    int8_onnx_bytes: int
    fp32_onnx_bytes: int         # the pruned model, fp32
    ort_vs_fakequant: float      # max |ORT int8 - fake-quant| on the calibration samples checked
    ort_vs_fakequant_steps: float  # the same in output quantisation steps (nan where the output is fp32)
    score: float | None = None   # eval_fn on the fake-quant model, when given
    int8_ms: float | None = None  # ORT CPU, 1 thread, batch 1, interleaved with the pruned fp32 file (time_rounds)
    fp32_ms: float | None = None
    candidates: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    layers_int4: int = 0         # weight-only int4 Linear layers (ORT MatMulNBits)
    latency: Any = None          # search.latency_budget.LatencyOutcome of a latency budget: every plan tried

    @property
    def latency_ratio(self) -> float | None:
        """The returned plan's measured int8 / dense fp32 time on the target (None without a latency budget)."""
        c = self.latency.final if self.latency is not None and self.latency.checks else None
        return c.measured_ms / c.measured_dense_ms if c is not None and c.measured_ms else None

    def __str__(self) -> str:
        lines = [("budget", f"{self.budget} ({self.quantize}, {self.strategy})"),
                 ("size", f"{self.size_ratio:.3f} of dense fp32 (predicted); ONNX int8 {self.int8_onnx_bytes} B "
                          f"vs pruned fp32 {self.fp32_onnx_bytes} B"),
                 ("BOPs", f"{self.bops_ratio:.4f} of dense fp32"),
                 ("MACs / params", f"{self.macs_ratio:.3f} / {self.params_ratio:.3f}"),
                 ("bit-widths", f"{self.layers_int8} int8 layers, {self.layers_fp32} fp32"
                                + (f", {self.layers_int4} int4" if self.layers_int4 else "")),
                 ("ORT vs sim", f"max |diff| {self.ort_vs_fakequant:.3g} ({self.ort_vs_fakequant_steps:.2f} steps)")]
        if self.int8_ms is not None:
            lines.append(("ORT latency", f"pruned fp32 {self.fp32_ms:.3f} ms -> int8 {self.int8_ms:.3f} ms "
                                         f"(x{self.fp32_ms / self.int8_ms:.2f}; 1 thread, interleaved)"))
        if self.latency is not None:
            lines += describe_latency(self.latency)
        if self.score is not None:
            lines.append(("score", f"{self.score:.4f} (eval_fn on the fake-quant model, {self.candidates} scored)"))
        lines.append(("time", ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items())))
        return "\n".join(f"{k:<14} {v}" for k, v in lines)


@dataclass
class CompressResult:
    """The pruned fp32 model, its bit plan, the fake-quant simulation, the ONNX files and the report."""

    model: fx.GraphModule
    bitplan: BitPlan
    fake_quant: fx.GraphModule
    onnx: QuantizedOnnx
    report: CompressReport


def _budget(budget: QuantBudget | float) -> QuantBudget:
    if isinstance(budget, QuantBudget):
        return budget
    if isinstance(budget, (float, int, np.floating)) and not isinstance(budget, bool):
        return QuantBudget.size(float(budget))
    raise BudgetError(f"compress takes a QuantBudget or a float (fraction of the dense fp32 size), got {budget!r}")


def _check_args(quantize: str, strategy: str, eval_fn: Callable | None, calib: list) -> str:
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if strategy == "auto":
        strategy = "joint" if eval_fn is not None else "global"
    if strategy not in COMPRESS_STRATEGIES:
        raise ValueError(f"strategy must be 'auto' or one of {COMPRESS_STRATEGIES}, got {strategy!r}")
    if strategy in ("joint", "rl") and eval_fn is None:
        raise ValueError(f"strategy={strategy!r} scores candidates with eval_fn(model) -> float; pass eval_fn")
    if quantize == "mixed" and strategy not in ("joint", "rl"):
        raise ValueError("quantize='mixed' chooses bit-widths by search: pass eval_fn (strategy 'joint')")
    if quantize == "int4" and strategy == "rl":
        raise ValueError("strategy='rl' chooses fp32 / int8 per layer only; use strategy 'joint' (or 'global' / "
                         "'uniform') with quantize='int4'")
    if not calib:
        raise ValueError("compress needs calib_data (batches of inputs, or (inputs, targets)) to calibrate "
                         "the int8 activations")
    return strategy


def compress(model: torch.nn.Module, budget: QuantBudget | float, example_inputs: Any, *, quantize: str = "int8",
             calib_data: Iterable, eval_fn: Callable[[torch.nn.Module], float] | None = None,
             strategy: str = "auto", importance: str | Callable = "l2", out: str | Path = "compressed.int8.onnx",
             calib_batches: int = 8, min_channels: int = 1, round_to: int | str = "auto",
             search_options: dict | None = None, time_rounds: int = 0, exporter: str = "auto",
             recalibrate_bn: bool = False, int4: Int4Scheme | None = None,
             target: Target | None = None,
             latency_measure: LatencyMeasure | None = None, **trace_kw: Any) -> CompressResult:
    """Prune and quantise ``model`` so its size, BOPs or measured latency is at most ``budget`` of the dense fp32
    model's.

    Args:
        budget: a float (fraction of the dense fp32 size in bytes) or ``QuantBudget.size / .bytes / .bops /
            .latency / .ms``.  A latency budget is planned under a time proxy and checked by measuring the int8
            file against the dense fp32 one, re-planning until they agree (``latency.py``); every plan tried is
            in ``report.latency``.
        example_inputs: one sample (batch 1) of the model's input.
        quantize: ``"int8"`` (every Conv / Linear int8), ``"mixed"`` (fp32 / int8 per layer, and int4 for Linear
            layers, searched; strategy ``"rl"`` searches fp32 / int8 only) or ``"int4"`` (every Linear int4,
            ORT ``MatMulNBits``; every Conv int8).
        int4: block size and symmetry of int4 layers (default ``Int4Scheme()``: blocks of 32, asymmetric).
        calib_data: batches calibrating the activation ranges (the first ``calib_batches`` are used).
        eval_fn: ``eval_fn(model) -> float``, higher is better, run on fake-quant candidates (joint search).
        strategy: ``"auto"`` (``"joint"`` with ``eval_fn``, else ``"global"``), ``"global"``, ``"uniform"``,
            ``"joint"`` (evolutionary, ``joint.py``), ``"rl"`` (hierarchical controller on GCN embeddings, ``rl.py``).
        importance: the pruning criterion (as in ``prune``); it also orders channels for the joint search.
        out: the int8 ONNX file (the pruned fp32 file is written beside it).
        round_to: kept widths in multiples of 16 (4 in groups under 16 units; ``"auto"``, ``joint.width_step``:
            int8 kernels like them), of N, or exact (1).
        search_options: ``JointConfig`` fields (``joint.py``) or, for ``"rl"``, ``RLJointConfig`` (``rl.py``).
        recalibrate_bn: re-estimate BatchNorm statistics on ``calib_data`` after pruning (``bn_recal.py``):
            for every candidate the joint search scores and for the returned model, before int8 calibration.
        exporter: the ONNX exporter for the int8 file (``graphprune.export.export_onnx``): ``"torchscript"``
            is ~10x faster than dynamo on small CNNs, which matters when a bench compresses many candidates.
        target: where a latency budget is measured: ``Target("ort-cpu", threads=, batch=)`` (default 1 thread,
            batch 1).
        latency_measure: a ``latency.LatencyMeasure`` replacing the ORT timing (tests use a deterministic one).
        time_rounds: when > 0, time the int8 and the pruned fp32 ONNX files (ORT CPU, 1 thread, batch 1,
            interleaved rounds) and report both.
    """
    t0, seconds = time.perf_counter(), {}
    calib = take_batches(calib_data, calib_batches)
    strategy = _check_args(quantize, strategy, eval_fn, calib)
    b = _budget(budget)
    if b.needs_latency and quantize == "int4":
        # NOTE: the latency loop's timing path (latency.OrtInt8Measure) writes int8 / fp32 files only
        raise BudgetError("a measured-latency budget times int8 / fp32 plans only (quantize='mixed' then searches "
                          "fp32 / int8): use quantize='int8' or 'mixed', or a size / BOPs budget with int4")
    graph = inspect(model, example_inputs, **trace_kw)
    scores = unit_scores(graph, importance)
    int4 = int4 or Int4Scheme()
    space_at = lambda qb: JointSpace(graph, scores, qb, min_units=min_channels, round_to=round_to,  # noqa: E731
                                     int4=int4)
    space = space_at(QuantBudget.size(1.0) if b.needs_latency else b)
    if not space.cost.layers:
        raise ValueError(f"compress found no Conv / Linear module calls in {type(model).__name__} (captured with "
                         f"{graph.traced.front_end}); quantisation plans name nn.Conv*/nn.Linear modules, so the "
                         "model must be traceable by torch.fx (front_end='fx') with those layers as modules")
    seconds["analyse"] = time.perf_counter() - t0
    allocate, scored = _allocator(graph, strategy, quantize, eval_fn, calib, recalibrate_bn, search_options,
                                  int4, int4_menus=not b.needs_latency)

    def rewrite_keep(keep: np.ndarray) -> fx.GraphModule:
        t = time.perf_counter()
        pruned = rewrite(graph, keep)
        pruned = recalibrate(pruned, calib) if recalibrate_bn else pruned
        seconds["rewrite"] = seconds.get("rewrite", 0.0) + time.perf_counter() - t
        return pruned

    outcome = None
    t = time.perf_counter()
    if b.needs_latency:
        measure = latency_measure or OrtInt8Measure(latency_target(target), example_inputs, calib, exporter)
        plan, outcome, _ = meet_compress_latency(b, model, example_inputs, space_at, allocate, rewrite_keep,
                                                 measure, seconds=seconds)
        best, pruned = plan.candidate, plan.pruned
        seconds["search"] = time.perf_counter() - t - seconds.get("measure", 0.0) - seconds.get("rewrite", 0.0)
    else:
        best, _ = allocate(space)
        seconds["search"] = time.perf_counter() - t
        pruned = rewrite_keep(best.keep)
    bitplan = BitPlan.from_unit_bits(graph, np.where(best.keep, 8, 0), best.bits, int4, budget=b.describe(),
                                     quantize=quantize, strategy=strategy, recalibrate_bn=recalibrate_bn,
                                     size_ratio=space.cost.size_bytes(best.keep, best.bits) / space.cost.dense("size"))
    result = _finish(graph, best.keep, bitplan, example_inputs, calib, out, eval_fn, seconds, pruned,
                     exporter=exporter)
    if time_rounds > 0:
        files = result.onnx
        x = normalize_inputs(example_inputs)[0]
        result.report.fp32_ms, result.report.int8_ms = interleaved_ms([files.fp32_path, files.int8_path], x,
                                                                      rounds=time_rounds)
    result.report.budget, result.report.quantize, result.report.strategy = b.describe(), quantize, strategy
    result.report.candidates = len(scored)
    result.report.latency = outcome
    return result


def _allocator(graph, strategy: str, quantize: str, eval_fn: Callable | None, calib: list, recalibrate_bn: bool,
               search_options: dict | None, int4: Int4Scheme, int4_menus: bool = True
               ) -> tuple[Callable[[JointSpace], tuple], dict]:
    """``allocate(space) -> (best candidate, candidates scored)`` for ``strategy``, and the scores by candidate
    (shared by every call: a latency budget re-plans, and a candidate met again is not scored again)."""
    scored: dict[tuple, float] = {}

    def evaluate(keep: np.ndarray, bits: dict[str, int]) -> float:
        key = (keep.tobytes(), tuple(sorted(bits.items())))
        if key not in scored:
            candidate = zero_bit_model(graph, keep)
            if recalibrate_bn:
                candidate = recalibrate(candidate, calib)
            scored[key] = float(eval_fn(fake_quant_model(candidate, calib, bits, int4)))
        return scored[key]

    def allocate(space: JointSpace) -> tuple:
        base, menu = _bit_menus(space.cost.layers, quantize, int4_menus)
        if strategy == "uniform":
            return space.uniform(base), []
        if strategy == "global":
            return space.global_keep(base), []
        if strategy == "rl":
            from .rl import RLJointConfig, rl_joint_search  # NOTE: torch_geometric only when asked for

            choices = (8, 32) if quantize == "mixed" else (8,)
            return rl_joint_search(space, evaluate, choices, RLJointConfig(**(search_options or {})))
        return joint_search(space, evaluate, menu, JointConfig(**(search_options or {})), base)
    return allocate, scored


def _finish(graph, keep: np.ndarray, bitplan: BitPlan, example_inputs: Any, calib: list, out: str | Path,
            eval_fn: Callable | None, seconds: dict, pruned: fx.GraphModule | None = None,
            exporter: str = "auto") -> CompressResult:
    """Rewrite, simulate, quantise with ORT, and measure: the stages after the allocation."""
    if pruned is None:
        t = time.perf_counter()
        pruned = rewrite(graph, keep)
        seconds["rewrite"] = time.perf_counter() - t
    t = time.perf_counter()
    fq = fake_quant_model(pruned, calib, bitplan.weight_bits, bitplan.int4)
    onnx_files = quantize_onnx(pruned, example_inputs, calib, out, bitplan.weight_bits, exporter=exporter,
                               int4=bitplan.int4)
    seconds["quantize"] = time.perf_counter() - t
    sample = torch.cat([batch_inputs(batch)[0] for batch in calib[:2]])[:32]
    got, want = ort_run(onnx_files.int8_path, sample), fq(sample).detach().numpy()
    diff = float(np.abs(got - want).max())
    scale = _output_scale(fq)
    steps = diff / scale if np.isfinite(scale) else float("nan")
    cost = QuantCost(graph, bitplan.int4)
    bits = bitplan.weight_bits
    dense_cost = graph.cost()
    kept_cost = graph.cost(keep)
    report = CompressReport(
        budget="", quantize="", strategy="",
        size_ratio=cost.size_bytes(keep, bits) / cost.dense("size"),
        bops_ratio=cost.bops(keep, bits) / cost.dense("bops"),
        macs_ratio=kept_cost.macs / dense_cost.macs, params_ratio=kept_cost.params / dense_cost.params,
        layers_int8=sum(bitplan.bits_of(layer.name) == 8 for layer in cost.layers),
        layers_fp32=sum(bitplan.bits_of(layer.name) == 32 for layer in cost.layers),
        int8_onnx_bytes=onnx_files.int8_bytes, fp32_onnx_bytes=onnx_files.fp32_bytes,
        ort_vs_fakequant=diff, ort_vs_fakequant_steps=steps,
        score=float(eval_fn(fq)) if eval_fn is not None else None, seconds=seconds,
        layers_int4=sum(bitplan.bits_of(layer.name) == INT4 for layer in cost.layers))
    return CompressResult(pruned, bitplan, fq, onnx_files, report)


def _bit_menus(layers: list, quantize: str, int4_menus: bool = True
               ) -> tuple[dict[str, int], dict[str, tuple[int, ...]]]:
    """The bits every layer starts from and the bits the joint search may give it, per ``quantize`` mode
    (int4 only for Linear layers: ORT has no 4-bit Conv kernel; none under a latency budget, whose timing path
    writes int8 / fp32 files only)."""
    linear = {layer.name: layer.kind == "linear" and int4_menus for layer in layers}
    base = {name: INT4 if quantize == "int4" and is_linear else 8 for name, is_linear in linear.items()}
    if quantize == "mixed":
        return base, {name: (8, 32, INT4) if is_linear else (8, 32) for name, is_linear in linear.items()}
    return base, {name: (bits,) for name, bits in base.items()}


def _output_scale(fq: fx.GraphModule) -> float:
    """Scale of the fake-quant node feeding the output (inf when the output is not quantised)."""
    out = next(n for n in fq.graph.nodes if n.op == "output")
    arg = out.args[0]
    if isinstance(arg, (tuple, list)):
        arg = arg[0]
    if isinstance(arg, fx.Node) and arg.op == "call_module" and str(arg.target).startswith("_gp_act_"):
        return fq.get_submodule(arg.target).qparams.scale
    return float("inf")


def apply_bitplan(model: torch.nn.Module, bitplan: BitPlan, example_inputs: Any, *, calib_data: Iterable,
                  out: str | Path = "compressed.int8.onnx", calib_batches: int = 8, **trace_kw: Any) -> CompressResult:
    """Re-apply a saved bit plan to a fresh instance of the same architecture: prune, simulate, quantise."""
    calib = take_batches(calib_data, calib_batches)
    graph = inspect(model, example_inputs, **trace_kw)
    keep = bitplan.channels.keep_mask(graph)
    pruned = apply_plan(model, bitplan.channels, example_inputs, **trace_kw)
    if bitplan.info.get("recalibrate_bn"):
        pruned = recalibrate(as_graph_module(pruned), calib)
    result = _finish(graph, keep, bitplan, example_inputs, calib, out, None, {}, pruned)
    result.report.budget = str(bitplan.info.get("budget", ""))
    result.report.quantize, result.report.strategy = str(bitplan.info.get("quantize", "")), "replay"
    return result

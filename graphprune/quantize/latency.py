"""Measured-latency budgets in ``compress``: plan under a time proxy, quantise, measure, re-plan.

A latency budget (``QuantBudget.latency(r)``: ``r`` of the dense fp32 model's measured time; ``QuantBudget.ms``)
has no closed-form cost: the time of an int8 model on ORT's CPU kernels depends on widths, QDQ overhead and
kernel choice.  So ``compress`` reuses the prune side's measure-and-re-plan loop
(``search.latency_budget.meet_latency``) with this module's pieces:

* a plan is the strategy's allocation under a *time-proxy* cap (``cost.QuantCost.time_proxy``: MACs with int8
  layers' weighted by ``INT8_MAC_COST``), rewritten to the pruned fp32 model (``CompressPlan``);
* :class:`ProxyLatency` is the loop's latency model: it predicts ``dense_ms · proxy ratio`` and measures a
  plan by handing its pruned model and bit-widths to a :class:`LatencyMeasure`;
* :class:`OrtInt8Measure` (the default measure) exports and quantises the plan exactly as ``compress`` will
  (QDQ, ``ort_ptq``) at the target's batch, and times the int8 file interleaved with the dense fp32 file
  (``latency.runners``: ORT CPU, the target's threads, fastest of 3 sessions);
* caps below the proxy's floor (every group at ``min_channels``, all int8) plan the floor; once the floor
  has been measured, a cap below it is refused, and the loop's error names the measured numbers (the budget
  is then out of reach of pruning + int8).

Tests hand ``compress(latency_measure=...)`` a deterministic measure (no timing).
"""
from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch
import torch.fx as fx
from torch.fx.experimental.optimization import fuse

from ..budget import Budget, BudgetError
from ..latency.model import Target
from ..search.cost import resolve_ms
from ..search.latency_budget import LatencyOutcome, meet_latency
from .cost import QuantBudget
from .fakequant import as_graph_module, batch_inputs
from .joint import Candidate, JointSpace

__all__ = ["LatencyMeasure", "OrtInt8Measure", "ProxyLatency", "CompressPlan", "meet_compress_latency",
           "latency_target"]


class LatencyMeasure(Protocol):
    """Times the compressed model against the dense fp32 one on a target."""

    target: Target

    def dense_ms(self, dense: torch.nn.Module) -> float:
        """Measured ms of the dense fp32 model."""
        ...

    def pair_ms(self, dense: torch.nn.Module, pruned: fx.GraphModule, bits: dict[str, int]) -> tuple[float, float]:
        """(dense fp32 ms, compressed ms): ``pruned`` quantised with ``bits``, both timed interleaved."""
        ...


def latency_target(target: Target | None) -> Target:
    """The target a compress latency budget is measured on: ORT CPU (default 1 thread, batch 1)."""
    target = target or Target()
    if target.runtime != "ort-cpu" or target.precision != "fp32":
        raise ValueError(f"compress measures latency on ONNX Runtime's CPU provider (the int8 QDQ file it writes); "
                         f"target {target.key} is not ort-cpu fp32: use Target('ort-cpu', threads=, batch=)")
    return target


@dataclass
class CompressPlan:
    """One plan of the loop: the allocation (``Candidate``), the candidates the search scored for it, and the
    pruned fp32 model."""

    candidate: Candidate
    evaluated: list[Candidate]
    pruned: fx.GraphModule
    proxy_ratio: float


class ProxyLatency:
    """The latency model ``meet_latency`` reads: proxy predictions, measurements through a ``LatencyMeasure``.

    Plans are keyed by :func:`plan_key` (keep mask and bit-widths); ``predict_ms`` takes such a key.
    """

    def __init__(self, measure: LatencyMeasure, dense_model: torch.nn.Module):
        self.measure, self.target = measure, measure.target
        self.dense_ms = float(measure.dense_ms(dense_model))
        self.plans: dict[bytes, CompressPlan] = {}
        self.measured: dict[bytes, list[float]] = {}  # compressed / dense, per measurement

    def predict_ms(self, key: np.ndarray) -> float:
        return self.dense_ms * self.plans[key.tobytes()].proxy_ratio

    def measure_ms(self, modules: list, example_inputs: Any) -> list[float]:
        dense, plan = modules
        dense_ms, ms = self.measure.pair_ms(dense, plan.pruned, plan.candidate.bits)
        self.measured.setdefault(plan_key(plan.candidate).tobytes(), []).append(ms / dense_ms)
        return [dense_ms, ms]


def plan_key(c: Candidate) -> np.ndarray:
    """Keep mask and bit-widths as one array (the loop tells plans apart by its bytes)."""
    return np.concatenate([c.keep.astype(np.uint8), np.array([b for _, b in sorted(c.bits.items())], np.uint8)])


@dataclass
class _Cfg:
    latency: ProxyLatency


@dataclass
class _Planner:
    """``plan(budget)`` for ``meet_latency``: allocate under the proxy cap, rewrite, remember the plan."""

    space_at: Callable[[QuantBudget], JointSpace]
    allocate: Callable[[JointSpace], tuple[Candidate, list[Candidate]]]
    rewrite: Callable[[np.ndarray], fx.GraphModule]
    latency: ProxyLatency
    floor_ratio: float
    floor_key: bytes | None = None
    by_key: dict[bytes, CompressPlan] = field(default_factory=dict)

    def __call__(self, budget: Budget) -> tuple:
        cap = resolve_ms(budget, self.latency).ratio
        if cap < self.floor_ratio and self.floor_key in self.latency.measured:
            got = np.median(self.latency.measured[self.floor_key])
            raise BudgetError(f"the smallest plan compress can build (every group at min_channels, all int8; "
                              f"time proxy {self.floor_ratio:.3f} of dense) measured {got:.3f} of the dense fp32 "
                              f"time: pruning + int8 cannot go lower on this target")
        space = self.space_at(QuantBudget("time", ratio=float(min(1.0, max(cap, self.floor_ratio)))))
        best, evaluated = self.allocate(space)
        key = plan_key(best)
        if cap < self.floor_ratio:
            self.floor_key = key.tobytes()
        if key.tobytes() not in self.by_key:
            proxy = space.cost.time_proxy(best.keep, best.bits) / space.cost.dense("time")
            self.by_key[key.tobytes()] = CompressPlan(best, evaluated, self.rewrite(best.keep), proxy)
        plan = self.by_key[key.tobytes()]
        self.latency.plans[key.tobytes()] = plan
        return None, key, plan, _Cfg(self.latency)


def meet_compress_latency(budget: QuantBudget, dense_model: torch.nn.Module, example_inputs: Any,
                          space_at: Callable[[QuantBudget], JointSpace],
                          allocate: Callable[[JointSpace], tuple[Candidate, list[Candidate]]],
                          rewrite: Callable[[np.ndarray], fx.GraphModule], measure: LatencyMeasure,
                          seconds: dict[str, float] | None = None, **loop_kw: Any
                          ) -> tuple[CompressPlan, LatencyOutcome, dict[bytes, CompressPlan]]:
    """Plan, quantise, measure, re-plan until the measured time meets ``budget`` (module docstring).

    Returns the chosen plan, the loop's outcome (every plan's cap, predicted and measured ms) and every plan made.
    Raises ``BudgetError`` when no plan met the budget (the message gives the measured numbers).
    """
    latency = ProxyLatency(measure, dense_model)
    probe = space_at(QuantBudget("time", ratio=1.0))
    int8 = {layer.name: 8 for layer in probe.cost.layers}
    floor = probe.keep_of_counts(np.zeros(len(probe.n)))
    floor_ratio = probe.cost.time_proxy(floor, int8) / probe.cost.dense("time")
    planner = _Planner(space_at, allocate, rewrite, latency, floor_ratio)
    goal = Budget.ms(budget.limit) if budget.limit is not None else Budget.latency(budget.ratio)
    (_, _, plan, _), outcome = meet_latency(planner, goal, dense_model, example_inputs, seconds=seconds, **loop_kw)
    if plan.candidate.keep.all():
        # NOTE: the loop's own reason (a gap, or cap 1) hides the plain answer: quantising alone meets the budget
        outcome.stop = f"the whole model, quantised, meets the budget: nothing to prune ({outcome.stop})"
    return plan, outcome, planner.by_key


class OrtInt8Measure:
    """The default :class:`LatencyMeasure`: the plan's int8 QDQ file (as ``compress`` writes it, at the target's
    batch) timed interleaved with the dense fp32 file on ORT CPU (``latency.runners``, fastest of 3 sessions)."""

    SESSIONS = 3

    def __init__(self, target: Target, example_inputs: Any, calib: list, exporter: str = "auto"):
        from ..latency.runners import with_batch

        self.target, self.calib, self.exporter = latency_target(target), calib, exporter
        self.inputs = with_batch(example_inputs, self.target.batch)
        self._dir = tempfile.TemporaryDirectory(prefix="graphprune-qlat-")
        self._dense: Path | None = None
        self._files: dict[int, Path] = {}

    def _export(self, model: torch.nn.Module, path: Path) -> Path:
        from ..export import export_onnx

        export_onnx(fuse(copy.deepcopy(as_graph_module(model)).eval(), no_trace=True), self.inputs, path,
                    exporter=self.exporter)
        return path

    def _int8(self, pruned: fx.GraphModule, bits: dict[str, int]) -> Path:
        from .ort_ptq import CalibrationReader, _quantize, onnx_layer_nodes

        key = id(pruned)  # NOTE: a plan's pruned model lives as long as the loop; one file per plan
        if key not in self._files:
            work = Path(self._dir.name)
            fp32 = self._export(pruned, work / f"plan{len(self._files)}.fp32.onnx")
            nodes = onnx_layer_nodes(fp32, as_graph_module(pruned))
            exclude = [nodes[n] for n, b in bits.items() if b == 32 and n in nodes]
            reader = CalibrationReader(self.calib, [f"input_{i}" for i in range(len(self.inputs))],
                                       self.target.batch)
            out = work / f"plan{len(self._files)}.int8.onnx"
            _quantize(fp32, out, reader, exclude)
            self._files[key] = out
        return self._files[key]

    def _time(self, paths: list[Path]) -> list[float]:
        from ..latency import runners

        arrays = [t.detach().cpu().numpy() for t in self.inputs]
        calls = [runners.prepare_onnx(p, arrays, self.target) for _ in range(self.SESSIONS) for p in paths]
        got = runners.time_interleaved_stats(calls, self.target, repeats=15, max_seconds=runners.MEASURE_SECONDS)
        return runners.fastest_session(*got, self.SESSIONS)[0]

    def dense_ms(self, dense: torch.nn.Module) -> float:
        if self._dense is None:
            self._dense = self._export(dense, Path(self._dir.name) / "dense.fp32.onnx")
        return self._time([self._dense])[0]

    def pair_ms(self, dense: torch.nn.Module, pruned: fx.GraphModule, bits: dict[str, int]) -> tuple[float, float]:
        if self._dense is None:
            self.dense_ms(dense)
        got = self._time([self._dense, self._int8(pruned, bits)])
        return got[0], got[1]


def describe_latency(outcome: LatencyOutcome) -> list[tuple[str, str]]:
    """Report lines: the target and goal, every plan tried (cap, predicted and measured ratios), why it stopped."""
    lines = [("latency", f"{outcome.goal} on {outcome.target}: {'met' if outcome.met else 'NOT met'} "
                         f"after {outcome.iterations} measured plan(s) (stopped: {outcome.stop})")]
    for i, c in enumerate(outcome.checks):
        mark = " <- returned" if outcome.met and i == outcome.chosen else ""
        measured = f"{c.measured_ms / c.measured_dense_ms:.3f}" if c.measured_ms else "-"
        lines.append((f"  plan {i + 1}", f"proxy cap {c.cap:.3f}: predicted {c.predicted_ms / c.predicted_dense_ms:.3f}"
                                         f", measured {measured} of dense fp32 (median of {len(c.pairs)}; "
                                         f"{c.measured_ms or float('nan'):.3f} ms){mark}"))
    return lines

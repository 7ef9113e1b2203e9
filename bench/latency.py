"""Latency-true pruning: measured speed-ups on the target runtime, graphprune vs Torch-Pruning, side by side.

For each torchvision model (``weights=None``, seeded, 224x224) and each target (runtime, precision, threads,
batch), four models are timed **interleaved in one process** (``graphprune.latency.runners.measure_ms``:
rounds A B C D A B C D …, medians, the fastest of a few sessions each):

* ``dense``: the model as built;
* ``gp default``: ``graphprune.prune(model, 0.5)`` at its defaults (``round_to="auto"``: width menus by layer size);
* ``TP r8``: Torch-Pruning 1.6 ``MagnitudePruner`` (L2, per layer, classifier ignored, ``round_to=8``) with the
  channel ratio bisected so its MACs land at 0.5 of dense (by graphprune's FLOP counter);
* ``gp latency``: ``graphprune.prune(model, Budget.latency(r), target=target)`` with ``r`` = Torch-Pruning's
  measured latency ratio on that target: the same time budget, measured per-layer tables, width menus on the
  measured staircase, end-to-end check and re-plan.

Reported per row: speed-up = dense ms / model ms; efficiency = speed-up x MACs ratio (1.0 = the ideal of a
cost-proportional runtime); whether ``gp latency`` met its budget within 5 %; the latency-table build time (first and
cached) and the re-plan iterations.  Ratios come from one interleaved batch, so a shared, noisy machine affects
every model alike; absolute ms are printed but only the ratios are compared.

    python bench/latency.py                                    # the default grid (hours on 2 cores)
    python bench/latency.py --models resnet18 --targets ort:1:1   # one model, ORT fp32, 1 thread, batch 1
    python bench/latency.py --targets ort:1:1 ort:2:1 ort:1:32 ov-bf16:1:1 ov-fp32:1:1
    python bench/latency.py --report                           # re-render latency.md from latency.json

Writes ``bench/results/latency.json`` (every row, merged after each model) and ``latency.md``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, build_model, environment, error_text, fmt, markdown_table  # noqa: E402

import graphprune  # noqa: E402
from graphprune import Budget  # noqa: E402
from graphprune.files import write_text_atomic  # noqa: E402
from graphprune.latency import Target  # noqa: E402
from graphprune.latency.runners import measure_ms  # noqa: E402
from graphprune.testing import counted_macs  # noqa: E402

MODELS = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "densenet121",
          "regnet_y_800mf", "convnext_tiny", "vit_b_16"]
RUNTIMES = {"ort": ("ort-cpu", "fp32"), "ov-bf16": ("openvino-cpu", "bf16"), "ov-fp32": ("openvino-cpu", "fp32")}


@dataclass
class Row:
    model: str
    target: str
    dense_ms: float | None = None
    macs: dict = field(default_factory=dict)       # variant -> MACs ratio (FlopCounterMode)
    ms: dict = field(default_factory=dict)         # variant -> median ms, one interleaved batch
    budget: float | None = None                    # gp latency's budget (TP's measured ratio)
    budget_from: str = "TP r8"                     # whose measured ratio is the budget
    gp_latency_ratio: float | None = None          # measured pruned / dense for gp latency
    gp_latency_loop_ratio: float | None = None     # the same, as measured by prune's re-plan loop
    met_within_5pct: bool | None = None
    iterations: int | None = None
    table_seconds: dict = field(default_factory=dict)  # {"first": s, "cached": s}
    errors: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)    # {"repeats": n, "sessions": n} of the interleaved batches
    code: str = ""                                 # graphprune commit and time the row was measured with
    latency_plans: list = field(default_factory=list)  # per plan: [cap, predicted ratio, measured ratio, n]
    latency_stop: str = ""                         # why prune's re-plan loop stopped
    load: list = field(default_factory=list)       # 1-min load average: before gp latency, after its check

    def speedup(self, variant: str) -> float | None:
        ms = self.ms.get(variant)
        return self.dense_ms / ms if ms and self.dense_ms else None

    def efficiency(self, variant: str) -> float | None:
        s, m = self.speedup(variant), self.macs.get(variant)
        return s * m if s and m else None


def parse_target(text: str) -> Target:
    """``RUNTIME:THREADS:BATCH``, RUNTIME one of ``RUNTIMES`` (e.g. ``ort:1:1``, ``ov-bf16:1:32``)."""
    name, threads, batch = text.split(":")
    runtime, precision = RUNTIMES[name]
    return Target(runtime, int(threads), int(batch), precision)


def target_label(t: Target) -> str:
    return f"{t.runtime} {t.precision} t{t.threads} b{t.batch}"


def torch_pruning_at(model: torch.nn.Module, x: torch.Tensor, macs_goal: float = 0.5, steps: int = 6):
    """Torch-Pruning round_to=8 with its channel ratio bisected to land at ``macs_goal`` of dense MACs."""
    import torch_pruning as tp

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import classifier

    dense = counted_macs(model, (x,))
    lo, hi, best = 0.05, 0.8, None
    for _ in range(steps):
        ratio = (lo + hi) / 2
        m = copy.deepcopy(model)
        tp.pruner.MagnitudePruner(m, x, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=ratio,
                                  global_pruning=False, round_to=8, ignored_layers=[classifier(m)[1]]).step()
        got = counted_macs(m, (x,)) / dense
        if best is None or abs(got - macs_goal) < abs(best[1] - macs_goal):
            best = (m, got)
        lo, hi = (ratio, hi) if got > macs_goal else (lo, ratio)
    return best


@dataclass(frozen=True)
class Timing:
    """How hard each interleaved comparison times: rounds, sessions per model; whether gp latency runs."""

    repeats: int = 15
    sessions: int = 3
    latency_budget: bool = True
    cached_rerun: bool = True  # prune a second time, on cached tables, to time that


def run_model(name: str, targets: list[Target], timing: Timing = Timing()) -> list[Row]:
    """Every target's row for one model (pruning once per model, the latency budget once per target)."""
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    dense_macs = counted_macs(model, (x,))
    variants, macs, errors = {}, {}, {}
    try:
        variants["gp default"] = graphprune.prune(model, 0.5, x)
    except Exception as exc:
        errors["gp default"] = error_text(exc)
    try:
        variants["TP r8"], _ = torch_pruning_at(model, x)
    except Exception as exc:
        errors["TP r8"] = error_text(exc)
    for v, m in variants.items():
        macs[v] = counted_macs(m, (x,)) / dense_macs
    rows = []
    for target in targets:
        row = Row(name, target_label(target), macs=dict(macs), errors=dict(errors),
                  timing={"repeats": timing.repeats, "sessions": timing.sessions}, code=_code())
        measured = measure_ms([model, *variants.values()], x, target, repeats=timing.repeats,
                              sessions=timing.sessions, max_seconds=None)
        row.dense_ms, row.ms = measured[0], dict(zip(variants, measured[1:]))
        source = "TP r8" if "TP r8" in variants else "gp default" if "gp default" in variants else None
        # NOTE: where Torch-Pruning fails, the time of graphprune's default is the budget
        if source is not None and timing.latency_budget:
            row.budget, row.budget_from = row.ms[source] / row.dense_ms, source
            _latency_budget(row, model, x, target, timing)
        rows.append(row)
        print(render_row(row), flush=True)
    return rows


def _latency_budget(row: Row, model: torch.nn.Module, x: torch.Tensor, target: Target, timing: Timing) -> None:
    """gp latency at TP's measured ratio; then all three pruned models timed again, interleaved with dense."""
    row.load = [os.getloadavg()[0]]
    try:
        t = time.perf_counter()
        res = graphprune.prune(model, Budget.latency(row.budget), x, target=target, return_result=True)
        row.table_seconds["prune"] = time.perf_counter() - t
        row.table_seconds.update({k: v for k, v in res.report.seconds.items() if "latency" in k})
        if timing.cached_rerun:
            t = time.perf_counter()
            graphprune.prune(model, Budget.latency(row.budget), x, target=target)  # cached tables now
            row.table_seconds["prune_cached"] = time.perf_counter() - t
    except Exception as exc:
        row.errors["gp latency"] = error_text(exc)
        return
    row.iterations = res.report.latency_iterations
    row.latency_stop = res.report.latency_stop
    row.latency_plans = [[c.cap, c.predicted_ms / c.predicted_dense_ms, c.measured_ms / c.measured_dense_ms,
                          len(getattr(c, "pairs", [])) or 1] for c in res.report.latency_checks]
    if res.report.measured_ms and res.report.measured_dense_ms:
        row.gp_latency_loop_ratio = res.report.measured_ms / res.report.measured_dense_ms
    row.macs["gp latency"] = counted_macs(res.model, (x,)) / counted_macs(model, (x,))
    # NOTE: one fresh interleaved batch for the comparison, so the three pruned models share the same load
    measured = measure_ms([model, res.model], x, target, repeats=timing.repeats, sessions=timing.sessions,
                          max_seconds=None)
    row.gp_latency_ratio = measured[1] / measured[0]
    row.ms["gp latency"] = row.dense_ms * row.gp_latency_ratio
    row.met_within_5pct = row.budget * 0.95 <= row.gp_latency_ratio <= row.budget * 1.05
    row.load.append(os.getloadavg()[0])


HEADERS = ["model", "target", "dense ms", "gp default x (eff)", "TP r8 x (eff)", "gp latency x (eff)",
           "budget", "gp lat ratio (in prune)", "met ±5%", "plans", "prune s (cached)"]


def _cell(row: Row, v: str) -> str:
    s = row.speedup(v)
    return "—" if s is None else f"{s:.2f} ({fmt(row.efficiency(v), '.2f')})"


def render_row(row: Row) -> str:
    budget = fmt(row.budget) + ("" if row.budget_from == "TP r8" else " (gp)")
    ratio = fmt(row.gp_latency_ratio) + (f" ({fmt(row.gp_latency_loop_ratio)})" if row.gp_latency_loop_ratio else "")
    return " | ".join([row.model, row.target, fmt(row.dense_ms, ".2f"), *(_cell(row, v) for v in
                       ("gp default", "TP r8", "gp latency")), budget, ratio,
                       fmt(row.met_within_5pct), str(row.iterations) if row.iterations is not None else "—",
                       f"{fmt(row.table_seconds.get('prune'), '.1f')} ({fmt(row.table_seconds.get('prune_cached'), '.1f')})"])


def _code() -> str:
    """``<graphprune commit> <UTC time>`` (the commit of the checkout graphprune was imported from)."""
    import subprocess

    try:
        commit = subprocess.run(["git", "-C", str(Path(graphprune.__file__).parent), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return f"{commit or '?'} {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "?"


def render(rows: list[Row], env: dict) -> str:
    table = markdown_table(HEADERS, [render_row(r).split(" | ") for r in rows])
    errors = [f"- {r.model} {r.target} {k}: {e}" for r in rows for k, e in r.errors.items()]
    loops = [f"- {r.model} {r.target} (load {'/'.join(f'{x:.1f}' for x in r.load)}): " +
             "; ".join(f"{c:.3f}: {p:.3f} -> {m:.3f} ({n})" for c, p, m, n in r.latency_plans) +
             f"; stop: {r.latency_stop}" for r in rows if r.latency_plans]
    codes: dict[str, list[str]] = {}
    for r in rows:
        code = r.code or "earlier runs, before this list (gp latency on the table's step-end menus)"
        codes.setdefault(code, []).append(f"{r.model} {r.target}")
    light = sorted({f"{r.target}: {r.timing['repeats']} rounds x {r.timing['sessions']} session(s)" for r in rows
                    if r.timing and (r.timing["repeats"], r.timing["sessions"]) != (Timing.repeats, Timing.sessions)})
    return "\n".join(["# Latency-true pruning (`bench/latency.py`)", "",
                      f"Machine: {_cpu()}; torch {env.get('torch', '?')}, onnxruntime {env.get('onnxruntime', '?')}, "
                      f"Torch-Pruning {_version('torch-pruning')}, {env.get('date', '')}. Speed-up x = dense ms / model "
                      "ms in one interleaved batch; eff = speed-up x MACs ratio (1.0 = ideal). `gp latency` has the "
                      "budget `budget` = TP r8's measured ratio ((gp): gp default's, where Torch-Pruning failed); `met ±5%` = its "
                      "measured ratio within 5 % below to 5 % above the budget.", "",
                      table, "", *([f"Timed with fewer rounds than the default ({Timing.repeats} rounds x "
                                    f"{Timing.sessions} sessions): " + "; ".join(light), ""] if light else []),
                      "Measured with (graphprune commit, UTC):",
                      *(f"- {c}: {', '.join(v)}" for c, v in codes.items()), "",
                      *(["Re-plan loops (cap, predicted -> measured ratio, measurements; load average before "
                         "and after):", *loops, ""] if loops else []),
                      *(["Errors:", *errors] if errors else [])])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--targets", nargs="+", default=["ort:1:1", "ort:2:1", "ort:1:32", "ort:2:32"],
                   help="RUNTIME:THREADS:BATCH with RUNTIME in " + ", ".join(RUNTIMES))
    p.add_argument("--out", default=str(RESULTS / "latency.json"))
    p.add_argument("--report", action="store_true", help="only re-render the markdown from the JSON")
    p.add_argument("--repeats", type=int, default=Timing.repeats, help="interleaved rounds per comparison")
    p.add_argument("--sessions", type=int, default=Timing.sessions, help="sessions per model (fastest kept)")
    p.add_argument("--no-cached-rerun", action="store_true",
                   help="skip the second gp latency prune on cached tables (it re-measures every plan)")
    p.add_argument("--no-latency-budget", action="store_true",
                   help="skip gp latency (its per-layer table at batch 32 takes long on a small CPU)")
    args = p.parse_args(argv)
    out = Path(args.out)
    saved = json.loads(out.read_text()) if out.exists() else {"env": environment(), "rows": []}
    rows = [Row(**r) for r in saved["rows"]]
    if not args.report:
        targets = [parse_target(t) for t in args.targets]
        for name in args.models:
            new = run_model(name, targets, Timing(args.repeats, args.sessions, not args.no_latency_budget,
                                                      not args.no_cached_rerun))
            done = {(r.model, r.target) for r in new}
            rows = [r for r in rows if (r.model, r.target) not in done] + new
            write_text_atomic(out, json.dumps({"env": environment(), "rows": [asdict(r) for r in rows]}, indent=1))
            write_text_atomic(out.with_suffix(".md"), render(rows, saved["env"]))
    print(render(rows, saved["env"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

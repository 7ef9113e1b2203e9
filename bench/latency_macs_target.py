"""Bench: a MACs budget with the target named — does measuring the target close the efficiency gap?

``bench/latency.py`` times ``prune(model, 0.5)`` at its defaults: no target, so ``round_to="auto"`` takes the
heuristic width menus and time shaping the proxy (nothing is measured).  ``prune(model, 0.5, target=t)`` keeps
the MACs budget but builds the latency table of ``t`` (pieces timed on that runtime, threads and batch): menus
on the measured staircase, shaping on the table's prediction.  Issue 16 misses efficiency >= 0.9 at 0.5 MACs
on DenseNet-121 and, at 2 threads, on 5 of 9 models; this bench asks whether naming the target fixes that.

Per model and target, timed **interleaved in one process** (``measure_ms``: rounds dense, default, target,
TP r8, …; fastest of ``--sessions`` sessions each): dense, ``gp default`` = ``prune(model, 0.5)``,
``gp target`` = ``prune(model, 0.5, target=t)``, and Torch-Pruning 1.6 round_to=8 bisected to 0.5 MACs
(``bench/latency.py``'s ``torch_pruning_at``).  Efficiency = speed-up x MACs ratio.  Also the table build
seconds (fresh cache) and the prune seconds after it.  With ``--measured-search``, also ``gp measured``: the
upper-bound probe of ``bench/measured_search.py`` (reallocation at the same MACs, each candidate measured whole,
importance guards off) — how far moving width between groups can go on that runtime at all.

    python bench/latency_macs_target.py --models densenet121 --targets ort:1:1
    python bench/latency_macs_target.py --models resnet18 regnet_y_800mf --targets ort:2:1
    python bench/latency_macs_target.py --models mobilenet_v3_large --targets ort:2:1 --measured-search
    python bench/latency_macs_target.py --models densenet121 --targets ort:2:1 --macs 0.57 --out OTHER.json

Writes ``bench/results/latency_macs_target.{json,md}`` (rows merged by model and target).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, build_model, error_text, markdown_table, run_rows_merged  # noqa: E402
from latency import parse_target, target_label, torch_pruning_at  # noqa: E402
from measured_search import measured_prune  # noqa: E402

import graphprune  # noqa: E402
from graphprune.latency import Target  # noqa: E402
from graphprune.latency.runners import measure_ms  # noqa: E402
from graphprune.testing import counted_macs  # noqa: E402

VARIANTS = ("gp default", "gp target", "gp measured", "TP r8")


@dataclass
class Row:
    model: str
    target: str
    dense_ms: float | None = None
    macs: dict = field(default_factory=dict)   # variant -> MACs ratio
    ms: dict = field(default_factory=dict)     # variant -> median ms (one interleaved batch)
    table_s: float | None = None               # latency table build, fresh cache
    prune_s: float | None = None               # prune(model, 0.5, target=t) on the built table
    errors: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    load: list = field(default_factory=list)   # 1-min load average before the prunes, after the timing
    search: dict = field(default_factory=dict)  # gp measured: seconds, measured start/end ratio, moves
    budget: float = 0.5                         # the MACs budget of every variant (TP bisected to it)

    def efficiency(self, variant: str) -> float | None:
        ms, m = self.ms.get(variant), self.macs.get(variant)
        return self.dense_ms / ms * m if ms and m and self.dense_ms else None


def run(name: str, target: Target, repeats: int, sessions: int, with_tp: bool, measured: bool,
        budget: float = 0.5) -> Row:
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    row = Row(name, target_label(target), timing={"repeats": repeats, "sessions": sessions},
              load=[os.getloadavg()[0]], budget=budget)
    dense_macs = counted_macs(model, (x,))
    variants = {}
    try:
        variants["gp default"] = graphprune.prune(model, budget, x)
    except Exception as exc:
        row.errors["gp default"] = error_text(exc)
    with tempfile.TemporaryDirectory() as fresh:
        os.environ["GRAPHPRUNE_CACHE"] = fresh
        try:
            from graphprune.depgraph import build_dependency_graph
            from graphprune.latency import build_latency_model
            from graphprune.trace import trace
            t = time.perf_counter()
            build_latency_model(build_dependency_graph(trace(model, x)), target, progress=True)
            row.table_s = time.perf_counter() - t
            t = time.perf_counter()
            variants["gp target"] = graphprune.prune(model, budget, x, target=target)
            row.prune_s = time.perf_counter() - t
        except Exception as exc:
            row.errors["gp target"] = error_text(exc)
        if measured:
            try:
                t = time.perf_counter()
                variants["gp measured"], log = measured_prune(model, budget, x, target)
                row.search = {"seconds": time.perf_counter() - t, **dataclasses.asdict(log)}
            except Exception as exc:
                row.errors["gp measured"] = error_text(exc)
        os.environ.pop("GRAPHPRUNE_CACHE")
    if with_tp:
        try:
            variants["TP r8"], _ = torch_pruning_at(model, x, macs_goal=budget)
        except Exception as exc:
            row.errors["TP r8"] = error_text(exc)
    row.macs = {v: counted_macs(m, (x,)) / dense_macs for v, m in variants.items()}
    got = measure_ms([model, *variants.values()], x, target, repeats=repeats, sessions=sessions, max_seconds=None)
    row.dense_ms, row.ms = got[0], dict(zip(variants, got[1:]))
    row.load.append(os.getloadavg()[0])
    return row


def render(rows: list[Row], env: dict) -> str:
    head = ["model", "target", "MACs budget", "dense ms", *[f"{v} x (eff, MACs)" for v in VARIANTS], "table s",
            "prune s", "load"]
    body = []
    for r in rows:
        cells = []
        for v in VARIANTS:
            e = r.efficiency(v)
            cells.append(f"{r.dense_ms / r.ms[v]:.2f} ({e:.2f}, {r.macs[v]:.3f})" if e else "fails" if v in r.errors
                         else "—")
        body.append([r.model, r.target, f"{r.budget:.3f}", f"{r.dense_ms:.2f}", *cells,
                     f"{r.table_s:.0f}" if r.table_s else "—", f"{r.prune_s:.0f}" if r.prune_s else "—",
                     "/".join(f"{x:.1f}" for x in r.load)])
    errors = [f"- {r.model} {r.target} {v}: {e}" for r in rows for v, e in r.errors.items()]
    searches = [f"- {r.model} {r.target}: {r.search['measured']} plans measured in {r.search['seconds']:.0f} s, "
                f"ratio {r.search['start_ratio']:.3f} -> {r.search['end_ratio']:.3f} in its own measurements; "
                f"moves: {', '.join(r.search['moves']) or 'none'}" for r in rows if r.search]
    return "\n".join(["# MACs budget with the target named (`bench/latency_macs_target.py`)", "",
                      f"torch {env['torch']}, onnxruntime {env['onnxruntime']}, {env['date']}. Speed-up x = dense ms /"
                      " model ms in one interleaved batch; eff = speed-up x MACs ratio (1.0 = ideal).", "",
                      markdown_table(head, body), "",
                      *(["`gp measured` (`bench/measured_search.py`, an upper-bound probe, importance guards off):",
                         *searches, ""] if searches else []),
                      *(["Errors:", *errors, ""] if errors else [])])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--targets", nargs="+", default=["ort:1:1"], help="RUNTIME:THREADS:BATCH (bench/latency.py)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--sessions", type=int, default=3)
    p.add_argument("--no-tp", action="store_true", help="skip Torch-Pruning")
    p.add_argument("--macs", type=float, default=0.5, help="the MACs budget (every variant; TP bisected to it)")
    p.add_argument("--measured-search", action="store_true",
                   help="also the upper-bound probe: shaping with every candidate plan measured (measured_search.py)")
    p.add_argument("--out", default=str(RESULTS / "latency_macs_target.json"))
    args = p.parse_args(argv)
    run_rows_merged(Path(args.out), Row, args.models, [parse_target(t) for t in args.targets],
                    lambda name, target: run(name, target, args.repeats, args.sessions, not args.no_tp,
                                                            args.measured_search, args.macs), render)
    return 0


if __name__ == "__main__":
    sys.exit(main())

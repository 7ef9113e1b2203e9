"""Bench: latency tables whose pieces are timed at a small batch, against pieces timed at the target's batch.

Issue 16 asks that building the latency table not dominate ``prune`` on ResNet-50; at batch 32 it did (first
latency-budget prune 1,303 s, ``latency_quiet_b32.md``).  ``latency/table.py`` now times pieces at
``min(batch, PIECE_BATCH)`` images on CPU targets and scales them.  This bench measures, per model, on one
target (ORT CPU fp32, 1 thread, batch 32 by default):

* **cost**: wall seconds of the small-batch table build (fresh cache), then of a latency-budget ``prune`` on
  that cache (the re-plan loop and the final check: what the rest of a first prune costs); with
  ``--time-full-build`` also the build of the table with pieces at the full batch (fresh cache);
* **error**: predicted pruned/dense ratios of both tables against ratios measured whole at the real batch,
  interleaved with the dense model, on menu-rounded plans (what prune returns), the prune's own plan, and one
  off-menu plan; whether the two tables offer the same width menus.

The full-batch tables are read from an existing timing cache (``--full-cache``: a folder holding
``ort-cpu-t1-b32-*.json``; ``--full-protocol``: the cache protocol it was written with; with 1 thread protocol 8
and 9 time alike, 9 only turned off spinning thread pools).  Run (quiet core, see ``bench/README``)::

    python bench/latency_piece_batch.py --models resnet18 mobilenet_v2 resnet50 --full-protocol 8

Writes ``bench/results/latency_piece_batch.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import graphprune  # noqa: E402
from graphprune import Budget  # noqa: E402
from graphprune.depgraph import build_dependency_graph  # noqa: E402
from graphprune.files import write_text_atomic  # noqa: E402
from graphprune.latency import Target, build_latency_model  # noqa: E402
from graphprune.latency import cache as cache_module  # noqa: E402
from graphprune.latency import runners, sweep  # noqa: E402
from graphprune.latency import table as table_module  # noqa: E402
from graphprune.passes import rewrite  # noqa: E402
from graphprune.testing import fraction_keep  # noqa: E402
from graphprune.trace import trace  # noqa: E402

from common import RESULTS, build_model, environment, markdown_table  # noqa: E402


@dataclass
class Row:
    """One model's comparison (see module docstring)."""

    model: str
    target: str
    piece_batch: int
    small_build_s: float = 0.0
    full_build_s: float | None = None  # only with --time-full-build (a fresh full-batch table)
    prune_cached_s: float = 0.0
    prune_plans: int = 0
    prune_measured_ratio: float | None = None
    budget: float = 0.0
    specs: int = 0
    plans: dict = field(default_factory=dict)  # name -> {"full": pred, "small": pred, "measured": ratio}
    menus_equal: float | None = None  # fraction of groups whose width menus agree
    dense_ms: float = 0.0
    load: list = field(default_factory=list)


@contextmanager
def _patched(**values):
    """Temporarily set module constants (``PIECE_BATCH`` in table.py, ``PROTOCOL`` in cache.py)."""
    old = {}
    for name, value in values.items():
        module = table_module if name == "PIECE_BATCH" else cache_module
        old[name] = (module, getattr(module, name))
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, (module, value) in old.items():
            setattr(module, name, value)


def _plan_keep(plan, graph):
    """The prune's plan as a mask over this graph (None where its groups differ: then it is left out)."""
    try:
        return plan.keep_mask(graph)
    except Exception:
        return None


def run_model(name: str, target: Target, args) -> Row:
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    graph = build_dependency_graph(trace(model, x))
    batch = table_module.piece_batch(target)
    row = Row(name, target.key, batch, budget=args.budget, load=[os.getloadavg()[0]])
    with tempfile.TemporaryDirectory() as fresh:
        folder = Path(fresh, "latency")  # where prune looks with GRAPHPRUNE_CACHE=fresh
        t = time.perf_counter()
        small = build_latency_model(graph, target, cache_dir=folder, progress=True)
        row.small_build_s = time.perf_counter() - t
        row.specs = len(small.table.timings)
        os.environ["GRAPHPRUNE_CACHE"] = fresh
        try:
            t = time.perf_counter()
            res = graphprune.prune(model, Budget.latency(args.budget), x, target=target, return_result=True)
            row.prune_cached_s = time.perf_counter() - t
        finally:
            os.environ.pop("GRAPHPRUNE_CACHE")
        checks = res.report.latency_checks
        if checks:
            row.prune_plans = len(checks)
            row.prune_measured_ratio = res.report.measured_ms / res.report.measured_dense_ms
    full = None
    if args.time_full_build:
        with tempfile.TemporaryDirectory() as fresh, _patched(PIECE_BATCH=target.batch):
            t = time.perf_counter()
            full = build_latency_model(graph, target, cache_dir=fresh, progress=True)
            row.full_build_s = time.perf_counter() - t
    elif args.full_cache:
        with _patched(PIECE_BATCH=target.batch, PROTOCOL=args.full_protocol):
            full = build_latency_model(graph, target, cache_dir=args.full_cache, progress=False)
        if full.table.measured:
            print(f"{name}: the full-batch cache lacked {full.table.measured} piece(s); timed now", flush=True)
    if full is not None:
        menus = [np.array_equal(full.width_menu(i), small.width_menu(i)) for i in range(len(graph.groups))]
        row.menus_equal = float(np.mean(menus)) if menus else None
    # NOTE: prune only returns menu widths; "uniform60" (exact 0.6 of every group) shows an off-menu plan
    random_ratios = np.random.default_rng(0).uniform(0.2, 1.0, len(graph.groups))
    plans = {"menu30": fraction_keep(graph, 0.3, small), "menu50": fraction_keep(graph, 0.5, small),
             "menu70": fraction_keep(graph, 0.7, small), "menu-random": fraction_keep(graph, random_ratios, small),
             "prune": _plan_keep(res.plan, graph), "uniform60": fraction_keep(graph, 0.6)}
    plans = {k: v for k, v in plans.items() if v is not None}
    modules = [graph.traced.gm] + [rewrite(graph, k) for k in plans.values()]
    ms = runners.measure_ms(modules, x, target, repeats=args.repeats, sessions=args.sessions,
                             max_seconds=None)
    row.dense_ms = ms[0]
    for (plan, keep), m in zip(plans.items(), ms[1:]):
        row.plans[plan] = {"measured": m / ms[0], "small": small.predict_ms(keep) / small.dense_ms,
                           "full": full.predict_ms(keep) / full.dense_ms if full is not None else None}
    row.load.append(os.getloadavg()[0])
    return row


def render(rows: list[Row], env: dict) -> str:
    lines = ["# Latency table: pieces at a small batch vs at the target's batch (`bench/latency_piece_batch.py`)", "",
             f"Machine: {cache_module._cpu_name()}; torch {env['torch']}, onnxruntime {env['onnxruntime']}, "
             f"{env['date']}. Target ORT CPU fp32, 1 thread. "
             "Ratios are pruned / dense ms; 'measured' is the whole model at the target's batch, "
             "interleaved with the dense model.", ""]
    head = ["model", "target", "piece batch", "specs", "table s (small batch)", "table s (target batch)",
            "rest of prune s", "plans", "budget → measured", "menus equal"]
    body = []
    for r in rows:
        body.append([r.model, r.target, str(r.piece_batch), str(r.specs), f"{r.small_build_s:.0f}",
                     f"{r.full_build_s:.0f}" if r.full_build_s else "—",
                     f"{r.prune_cached_s:.0f}", str(r.prune_plans),
                     f"{r.budget:.2f} → {r.prune_measured_ratio:.3f}" if r.prune_measured_ratio else f"{r.budget:.2f}",
                     f"{r.menus_equal:.2f}" if r.menus_equal is not None else "—"])
    lines += [markdown_table(head, body), ""]
    head = ["model", "plan", "measured", "predicted (pieces at target batch)", "error", "predicted (small batch)",
            "error"]
    body = []
    for r in rows:
        for plan, p in r.plans.items():
            full = p["full"]
            body.append([r.model, plan, f"{p['measured']:.3f}",
                         f"{full:.3f}" if full is not None else "—",
                         f"{full / p['measured'] - 1:+.1%}" if full is not None else "—",
                         f"{p['small']:.3f}", f"{p['small'] / p['measured'] - 1:+.1%}"])
    lines += [markdown_table(head, body), ""]
    lines += ["Load average before / after each model: " +
              ", ".join(f"{r.model} {r.load[0]:.1f}/{r.load[-1]:.1f}" for r in rows), ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2", "resnet50"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--budget", type=float, default=0.6, help="latency budget of the prune (fraction of dense)")
    parser.add_argument("--full-cache", default=str(cache_module.default_cache_dir()))
    parser.add_argument("--full-protocol", type=int, default=cache_module.PROTOCOL)
    parser.add_argument("--time-full-build", action="store_true",
                        help="build the full-batch table in a fresh cache and time it (instead of --full-cache)")
    parser.add_argument("--measure-seconds", type=float, default=runners.MEASURE_SECONDS,
                        help="runners.MEASURE_SECONDS for prune's whole-model checks; 0: no limit (before it existed)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "latency_piece_batch"))
    args = parser.parse_args(argv)
    target = Target("ort-cpu", threads=1, batch=args.batch)
    runners.MEASURE_SECONDS = args.measure_seconds or None
    env, rows = environment(), []
    for name in args.models:
        rows.append(run_model(name, target, args))
        text = render(rows, env)
        print(text, flush=True)
        write_text_atomic(Path(args.out + ".md"), text)
        write_text_atomic(Path(args.out + ".json"), json.dumps({"env": env, "rows": [asdict(r) for r in rows]},
                                                               indent=1, default=str))


if __name__ == "__main__":
    main()

"""Bench: how the latency table's pieces-to-model calibration predicts whole-model times, and which rule is best.

The table sums per-layer piece times (``raw``) and maps the ratio ``x = raw(plan) / raw(dense)`` to a predicted
pruned/dense ratio ``y`` through a calibration measured whole (``latency/table.py``).  The issue-16 bench found
that map 20-55 % low on deep and random-width plans (``latency_piece_batch.md``).  This bench measures, per model
and target, a dozen plans whole (interleaved with the dense model, one batch) and scores calibration rules on the
plans each rule did not use:

* ``table``: the table's own rule (power law through a half-width model measured at build time);
* ``power@half``: the same rule through this batch's ``menu50`` plan (separates rule error from build-time noise);
* ``power-lsq``: one power law, least squares in log space through ``menu30``, ``menu50`` and ``menu80``;
* ``floor+power``: ``y = f + (1 - f) x^gamma`` through ``menu50`` and ``menu80`` (a part that does not shrink);
* ``piecewise``: log-log interpolation through ``menu30``, ``menu50``, ``menu80`` and the dense model (the rule
  ``latency/table.py`` adopted, there through its own 0.3 / 0.5 / 0.8 calibration models);
* ``macs``: no table at all, ``y`` = the plan's MACs ratio.

Every rule is scored on the same plans: all but the three calibration plans.

Plans: every group at ``r`` of its units rounded down to its measured menu (``menuNN``), three random per-group
ratios in [0.3, 1] on the menus, and one off-menu plan (``uniform60``: exactly 0.6 of every group).

    python bench/latency_calibration.py --models resnet18 mobilenet_v2 --targets ort:1:1

Writes ``bench/results/latency_calibration.{json,md}`` (rows merged by model and target).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, build_model, markdown_table, run_rows_merged  # noqa: E402
from latency import parse_target, target_label  # noqa: E402

from graphprune.depgraph import build_dependency_graph  # noqa: E402
from graphprune.latency import build_latency_model  # noqa: E402
from graphprune.latency.runners import measure_ms  # noqa: E402
from graphprune.passes import rewrite  # noqa: E402
from graphprune.testing import counted_macs, fraction_keep  # noqa: E402
from graphprune.trace import trace  # noqa: E402

CALIBRATION_PLANS = ("menu30", "menu50", "menu80")
FRACTIONS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class Row:
    model: str
    target: str
    dense_ms: float = 0.0
    table_gamma: float | None = None
    plans: dict = field(default_factory=dict)  # name -> {"x": raw ratio, "macs": ratio, "y": measured, "table": pred}
    load: list = field(default_factory=list)


def power_through(points: list[tuple[float, float]]) -> Callable[[float], float]:
    """``y = x^gamma``, gamma by least squares in log space (one point: exact)."""
    pts = [(math.log(x), math.log(y)) for x, y in points if 0 < x < 1 and y > 0]
    if not pts:
        return lambda x: x
    gamma = sum(a * b for a, b in pts) / sum(a * a for a, _ in pts)
    return lambda x: x ** gamma


def floor_power_through(p1: tuple[float, float], p2: tuple[float, float]) -> Callable[[float], float]:
    """``y = f + (1 - f) x^gamma`` through two points, ``f`` in [0, min y) by bisection; else the power law."""
    (x1, y1), (x2, y2) = p1, p2

    def gamma_at(f: float) -> float:
        return math.log((y1 - f) / (1 - f)) / math.log(x1)

    def residual(f: float) -> float:
        return f + (1 - f) * x2 ** gamma_at(f) - y2
    if not (0 < x1 < 1 and 0 < x2 < 1 and 0 < y1 < 1 and 0 < y2 < 1):
        return power_through([p1, p2])
    lo, hi = 0.0, min(y1, y2) * 0.999
    if residual(lo) * residual(hi) > 0:
        return power_through([p1, p2])
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if residual(lo) * residual(mid) > 0 else (lo, mid)
    f = (lo + hi) / 2
    g = gamma_at(f)
    return lambda x: f + (1 - f) * x ** g


def piecewise_through(points: list[tuple[float, float]]) -> Callable[[float], float]:
    """Log-log linear interpolation through ``points`` and (1, 1); below the first point, its segment's law."""
    pts = sorted(points) + [(1.0, 1.0)]
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    first = (ly[1] - ly[0]) / (lx[1] - lx[0])

    def predict(x: float) -> float:
        lo = math.log(x)
        return math.exp(float(np.interp(lo, lx, ly)) if lo >= lx[0] else ly[0] + first * (lo - lx[0]))
    return predict


def run(name: str, target, repeats: int, sessions: int) -> Row:
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    graph = build_dependency_graph(trace(model, x))
    latency = build_latency_model(graph, target, progress=True)
    row = Row(name, target_label(target), table_gamma=latency.gamma, load=[os.getloadavg()[0]])
    plans = {f"menu{round(100 * f)}": fraction_keep(graph, f, latency) for f in FRACTIONS}
    rng = np.random.default_rng(0)
    for i in range(3):
        plans[f"random{i}"] = fraction_keep(graph, rng.uniform(0.3, 1.0, len(graph.groups)), latency)
    plans["uniform60"] = fraction_keep(graph, 0.6)
    modules = [graph.traced.gm] + [rewrite(graph, k) for k in plans.values()]
    dense_macs = counted_macs(graph.traced.gm, (x,))
    ms = measure_ms(modules, x, target, repeats=repeats, sessions=sessions, max_seconds=None)
    row.dense_ms = ms[0]
    for (plan, keep), module, m in zip(plans.items(), modules[1:], ms[1:]):
        sizes = graph.class_sizes(keep)
        row.plans[plan] = {"x": latency._raw_ms(sizes) / latency.raw_full,
                           "macs": counted_macs(module, (x,)) / dense_macs,
                           "y": m / ms[0], "table": latency.predict_ms(keep) / latency.dense_ms}
    row.load.append(os.getloadavg()[0])
    return row


def rules(row: Row) -> dict[str, Callable[[dict], float]]:
    """Each calibration rule as ``plan -> predicted ratio`` (module docstring)."""
    p = row.plans
    point = {k: (p[k]["x"], p[k]["y"]) for k in CALIBRATION_PLANS}
    power_half, power_lsq = power_through([point["menu50"]]), power_through(list(point.values()))
    floor_power = floor_power_through(point["menu50"], point["menu80"])
    piecewise = piecewise_through(list(point.values()))
    return {"table": lambda q: q["table"], "power@half": lambda q: power_half(q["x"]),
            "power-lsq": lambda q: power_lsq(q["x"]), "floor+power": lambda q: floor_power(q["x"]),
            "piecewise": lambda q: piecewise(q["x"]), "macs": lambda q: q["macs"]}


def scores(row: Row) -> dict[str, tuple[float, float]]:
    """Per rule: (median, max) |relative error| on the menu-width plans no rule was calibrated on (the off-menu
    ``uniform60``, which prune never returns, is in the detail table only)."""
    held = [q for k, q in row.plans.items() if k not in CALIBRATION_PLANS and k != "uniform60"]
    out = {}
    for rule, predict in rules(row).items():
        errors = [abs(predict(q) / q["y"] - 1) for q in held]
        out[rule] = (float(np.median(errors)), float(np.max(errors)))
    return out


def render(rows: list[Row], env: dict) -> str:
    names = list(rules(rows[0])) if rows else []
    head = ["model", "target", "dense ms", *[f"{n} med / max" for n in names]]
    body = [[r.model, r.target, f"{r.dense_ms:.2f}",
             *[f"{a:.1%} / {b:.1%}" for a, b in scores(r).values()]] for r in rows]
    detail_head = ["model", "target", "plan", "x (pieces)", "MACs", "measured", *names]
    detail = []
    for r in rows:
        for plan, q in r.plans.items():
            detail.append([r.model, r.target, plan + (" (cal)" if plan in CALIBRATION_PLANS else ""),
                           f"{q['x']:.3f}", f"{q['macs']:.3f}", f"{q['y']:.3f}",
                           *[f"{f(q):.3f}" for f in rules(r).values()]])
    return "\n".join([
        "# Latency-table calibration rules (`bench/latency_calibration.py`)", "",
        f"torch {env['torch']}, onnxruntime {env['onnxruntime']}, {env['date']}. Ratios are pruned / dense ms, the "
        "dense model and every plan timed whole, interleaved, in one batch. Errors are |predicted / measured - 1| on "
        f"the menu-width plans not used for calibration ({', '.join(CALIBRATION_PLANS)} are; the off-menu uniform60 "
        "only in the detail table).", "",
        markdown_table(head, body), "", markdown_table(detail_head, detail), "",
        "Load average before / after: " + ", ".join(f"{r.model} {r.target} {r.load[0]:.1f}/{r.load[-1]:.1f}"
                                                    for r in rows), ""])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--targets", nargs="+", default=["ort:1:1"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--sessions", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "latency_calibration.json"))
    args = p.parse_args(argv)
    run_rows_merged(Path(args.out), Row, args.models, [parse_target(t) for t in args.targets],
                    lambda name, target: run(name, target, args.repeats, args.sessions), render)
    return 0


if __name__ == "__main__":
    sys.exit(main())

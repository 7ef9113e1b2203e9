"""Bench: one whole-model latency check (``measure_ms`` of dense + pruned), rounds sized to the call time vs all.

A latency-budget prune measures the dense and the pruned model end to end after each plan
(``search/latency_budget.py``).  At batch 32 one such check used to take ~390 s on ConvNeXt-T (15 rounds x 3
sessions of ~4 s calls); ``runners.MEASURE_SECONDS`` now cuts the rounds (not below ``MIN_REPEATS``) so the rounds
take about that long.  Per model this bench times the check both ways, alternating (sized, all, sized, all, …),
and reports seconds per check and the pruned/dense ratio each way measured: the saving, and whether fewer
rounds moved the answer.  The pruned model is ``prune(model, 0.5)`` at its defaults.

    python bench/latency_check_time.py --models resnet50 convnext_tiny --batch 32 --pairs 2

Writes ``bench/results/latency_check_time.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, build_model, environment, markdown_table  # noqa: E402

import graphprune  # noqa: E402
from graphprune.files import write_text_atomic  # noqa: E402
from graphprune.latency import Target  # noqa: E402
from graphprune.latency import runners  # noqa: E402


@dataclass
class Row:
    model: str
    target: str
    seconds: dict = field(default_factory=lambda: {"sized": [], "all": []})  # wall seconds per check
    ratios: dict = field(default_factory=lambda: {"sized": [], "all": []})   # pruned / dense per check
    dense_ms: list = field(default_factory=list)
    load: list = field(default_factory=list)


def run(name: str, target: Target, pairs: int) -> Row:
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    pruned = graphprune.prune(model, 0.5, x)
    row = Row(name, target.key, load=[os.getloadavg()[0]])
    for _ in range(pairs):
        for way, limit in (("sized", "default"), ("all", None)):
            t = time.perf_counter()
            dense_ms, pruned_ms = runners.measure_ms([model, pruned], x, target, max_seconds=limit)
            row.seconds[way].append(time.perf_counter() - t)
            row.ratios[way].append(pruned_ms / dense_ms)
            row.dense_ms.append(dense_ms)
            print(f"{name} {way}: {row.seconds[way][-1]:.0f} s, ratio {row.ratios[way][-1]:.4f}", flush=True)
    row.load.append(os.getloadavg()[0])
    return row


def render(rows: list[Row], env: dict) -> str:
    head = ["model", "target", "dense ms", "check s: sized", "check s: all rounds", "saving",
            "ratio: sized", "ratio: all rounds"]
    body = [[r.model, r.target, f"{np.median(r.dense_ms):.0f}",
             " / ".join(f"{s:.0f}" for s in r.seconds["sized"]), " / ".join(f"{s:.0f}" for s in r.seconds["all"]),
             f"{np.median(r.seconds['all']) / np.median(r.seconds['sized']):.1f}x",
             " / ".join(f"{v:.3f}" for v in r.ratios["sized"]), " / ".join(f"{v:.3f}" for v in r.ratios["all"])]
            for r in rows]
    return "\n".join(["# Whole-model check time: rounds sized to the call vs all rounds (`bench/latency_check_time.py`)",
                      "", f"torch {env['torch']}, onnxruntime {env['onnxruntime']}, {env['date']}; "
                      f"MEASURE_SECONDS = {runners.MEASURE_SECONDS:g}, MIN_REPEATS = {runners.MIN_REPEATS}, "
                      f"all rounds = 15 x {runners.SESSIONS} sessions. Checks alternate sized, all, sized, all.", "",
                      markdown_table(head, body), "",
                      "Load average before / after: " + ", ".join(f"{r.model} {r.load[0]:.1f}/{r.load[-1]:.1f}"
                                                                  for r in rows), ""])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet50", "convnext_tiny"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "latency_check_time.json"))
    args = p.parse_args(argv)
    target = Target("ort-cpu", threads=args.threads, batch=args.batch)
    rows, env = [], environment()
    for name in args.models:
        rows.append(run(name, target, args.pairs))
        write_text_atomic(Path(args.out), json.dumps({"env": env, "rows": [asdict(r) for r in rows]}, indent=1))
        write_text_atomic(Path(args.out).with_suffix(".md"), render(rows, env))
        print(render(rows, env), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

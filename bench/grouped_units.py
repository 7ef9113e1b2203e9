"""Grouped-conv units: is a grouped-conv network faster pruned by whole groups or by offsets in every group?

The same model is pruned to the same MACs budget with ``grouped="groups"`` (whole groups go, the width per group
stays) and ``grouped="group_width"`` (the k-th channel of every group goes, the group count stays), at the default
``round_to="auto"`` and at exact widths (``round_to=1``); the dense model and the variants are timed interleaved
on one target (``graphprune.latency.runners.measure_ms``: ONNX Runtime CPU by default).  Speed-up = dense ms /
variant ms; eff = speed-up x MACs ratio (1.0 = time falls with the MACs).

Writes ``bench/results/grouped_units.json`` and ``.md``; this is the evidence behind ``"auto"`` in
``graphprune/depgraph/conv_groups.py``.  Note the load average beside the numbers (a shared CPU is noisy;
the interleaving keeps the ratios fair).

    python bench/grouped_units.py
    python bench/grouped_units.py --models regnet_y_400mf --size 64 --repeats 2 --sessions 1
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, build_model, environment, markdown_table, write_json  # noqa: E402

import graphprune  # noqa: E402
from graphprune.files import write_text_atomic  # noqa: E402
from graphprune.latency import Target  # noqa: E402
from graphprune.latency.runners import measure_ms  # noqa: E402
from graphprune.testing import counted_macs  # noqa: E402

MODELS = ["regnet_y_800mf", "resnext50_32x4d"]
VARIANTS = {"groups": dict(grouped="groups"), "group_width": dict(grouped="group_width"),
            "groups r1": dict(grouped="groups", round_to=1), "group_width r1": dict(grouped="group_width", round_to=1)}


@dataclass
class Row:
    model: str
    target: str
    budget: float
    dense_ms: float = 0.0
    macs: dict = field(default_factory=dict)  # variant -> MACs ratio (FlopCounterMode)
    ms: dict = field(default_factory=dict)  # variant -> median ms, one interleaved batch with dense
    groups: dict = field(default_factory=dict)  # variant -> the report's "groups kept" line
    load: tuple = ()  # load average (1, 5, 15 min) before timing

    def speedup(self, v: str) -> float:
        return self.dense_ms / self.ms[v]

    def efficiency(self, v: str) -> float:
        return self.speedup(v) * self.macs[v]


def run(name: str, target: Target, budget: float, size: int, repeats: int, sessions: int) -> Row:
    model = build_model(name).eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    dense = counted_macs(model, (x,))
    row = Row(name, target.key, budget)
    pruned = {}
    for variant, kw in VARIANTS.items():
        res = graphprune.prune(model, budget, x, return_result=True, **kw)
        pruned[variant] = res.model
        row.macs[variant] = counted_macs(res.model, (x,)) / dense
        row.groups[variant] = res.report.grouped
    row.load = os.getloadavg()
    ms = measure_ms([model, *pruned.values()], x, target, repeats=repeats, sessions=sessions,
                    max_seconds=None)
    row.dense_ms, row.ms = ms[0], dict(zip(pruned, ms[1:]))
    return row


def render(rows: list[Row]) -> str:
    cells = lambda r: [f"{r.speedup(v):.2f} ({r.efficiency(v):.2f})" for v in VARIANTS]  # noqa: E731
    table = [[r.model, r.target, f"{r.dense_ms:.2f}", *cells(r), " / ".join(f"{a:.1f}" for a in r.load)] for r in rows]
    head = ["model", "target", "dense ms", *(f"{v} x (eff)" for v in VARIANTS), "load 1/5/15 min"]
    kept = [f"- {r.model} {v}: {r.groups[v]}" for r in rows for v in VARIANTS]
    return ("# Grouped-conv units (`bench/grouped_units.py`)\n\nSpeed-up x = dense ms / variant ms in one interleaved "
            "batch; eff = speed-up x MACs ratio. `r1`: `round_to=1` (exact widths); else `round_to=\"auto\"`.\n\n"
            + markdown_table(head, table) + "\n\nGroups kept per grouped conv:\n" + "\n".join(kept) + "\n")


def main(argv=None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--budget", type=float, default=0.5)
    p.add_argument("--size", type=int, default=224, help="input height and width")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds")
    p.add_argument("--sessions", type=int, default=2, help="sessions per model (fastest kept)")
    p.add_argument("--out", default=str(RESULTS / "grouped_units"), help="path without suffix (.json and .md)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    target = Target("ort-cpu", args.threads, args.batch, "fp32")
    rows = []
    for name in args.models:
        rows.append(run(name, target, args.budget, args.size, args.repeats, args.sessions))
        print(render(rows[-1:]), flush=True)
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {"env": environment(), "rows": [asdict(r) for r in rows]})
    write_text_atomic(out.with_suffix(".md"), render(rows))
    return rows


if __name__ == "__main__":
    main()

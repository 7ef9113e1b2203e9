"""Coupling patterns (graphprune's pattern suite) under graphprune and Torch-Pruning, side by side.

For each pattern model: graphprune at budget 0.5 (MACs), held to the oracle (pruned == masked reference),
and Torch-Pruning 1.6 (magnitude, channel ratio 0.5, final layer ignored) — whether it prunes at all and
whether its pruned model still runs with the right output shape.  A forward that runs is necessary, not
sufficient, for Torch-Pruning to be right; graphprune's column is the full mask-equivalence check.

    python bench/coupling_patterns.py   # writes bench/results/patterns.{md,json}
"""
from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment, error_text, markdown_table, write_json  # noqa: E402

import graphprune  # noqa: E402
from graphprune.passes import masked_model  # noqa: E402
from graphprune.testing import PATTERNS, randomize_  # noqa: E402


def _last_layer(model: torch.nn.Module) -> torch.nn.Module:
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    return layers[-1]


def run_graphprune(model, x) -> dict:
    t = time.perf_counter()
    try:
        res = graphprune.prune(model, 0.5, x, return_result=True)
    except Exception as exc:
        return {"gp_ok": False, "gp_error": error_text(exc)}
    seconds = time.perf_counter() - t
    reference = masked_model(res.graph, res.plan.keep_mask(res.graph)).eval()
    with torch.no_grad():
        got, want = res.model(x), reference(x)
    diff = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
    return {"gp_ok": diff < 1e-4, "gp_macs": res.report.macs_ratio, "gp_mask_diff": diff,
            "gp_groups": len(res.graph.groups), "gp_s": seconds}


def run_torch_pruning(model, x) -> dict:
    import torch_pruning as tp

    model = copy.deepcopy(model)
    with torch.no_grad():
        shape = model(x).shape
    try:
        before = tp.utils.count_ops_and_params(model, x)[0]
        pruner = tp.pruner.MagnitudePruner(model, x, importance=tp.importance.MagnitudeImportance(p=2),
                                           pruning_ratio=0.5, ignored_layers=[_last_layer(model)])
        pruner.step()
        with torch.no_grad():
            y = model(x)
        after = tp.utils.count_ops_and_params(model, x)[0]
    except Exception as exc:
        return {"tp_ok": False, "tp_error": error_text(exc)}
    ok = tuple(y.shape) == tuple(shape)
    return {"tp_ok": ok, "tp_macs": float(after / before), "tp_error": "" if ok else f"output {tuple(y.shape)}"}


def main() -> None:
    rows = []
    for p in tqdm(PATTERNS, desc="patterns"):
        torch.manual_seed(0)
        model, x = randomize_(p.build().eval()), p.make_input()
        rows.append({"pattern": p.name, **run_graphprune(model, x), **run_torch_pruning(model, x)})
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "patterns.json", {"environment": environment(), "rows": rows})
    table = markdown_table(
        ["pattern", "gp OK (mask-equivalent)", "gp MACs", "gp mask diff", "TP runs", "TP MACs", "TP error"],
        [[r["pattern"], "✓" if r["gp_ok"] else "✗ " + r.get("gp_error", ""), f"{r.get('gp_macs', np.nan):.3f}",
          f"{r.get('gp_mask_diff', np.nan):.1e}", "✓" if r["tp_ok"] else "✗",
          f"{r.get('tp_macs', np.nan):.3f}", r.get("tp_error", "")] for r in rows])
    n_gp, n_tp = sum(r["gp_ok"] for r in rows), sum(r["tp_ok"] for r in rows)
    text = (f"# Coupling patterns: graphprune vs Torch-Pruning\n\n{__doc__.split(chr(10) + chr(10))[1]}\n\n"
            f"graphprune mask-equivalent on **{n_gp}/{len(rows)}**; Torch-Pruning runs on **{n_tp}/{len(rows)}**.\n\n"
            f"{table}\n")
    (RESULTS / "patterns.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

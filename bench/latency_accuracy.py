"""Does latency-awareness buy accuracy?  Latency-aware allocation vs MACs-uniform at the same measured time.

For each Fashion-MNIST baseline (``checkpoints/<model>.pt``, 28x28x1) on ONNX Runtime CPU (1 thread, batch 1):

* ``latency-aware``: ``graphprune.prune(model, Budget.latency(r), x, target=target)`` — the measured per-layer
  tables, width menus on the measured staircases, global L2 importance, end-to-end check and re-plan;
* ``macs-uniform``: ``graphprune.prune(model, b, x, strategy="uniform", importance="l1")`` (a MACs budget, the
  default heuristic width menus) with ``b`` bisected until its *measured* time matches the latency-aware model's.

Both are then timed once more with the dense model in one interleaved batch (the ratios reported), and fine-tuned
with the same recipe (KD from the dense model, SGD, ``--ft-epochs`` on ``--ft-subset`` training images) for each
seed; accuracy on ``--test-subset`` test images.  Writes ``bench/results/latency_accuracy.{json,md}``.

    python bench/latency_accuracy.py                       # resnet56 and mobilenetv2, r = 0.5, 3 seeds
    python bench/latency_accuracy.py --models resnet56 --latency 0.4 --seeds 1
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import EXAMPLE, REPO, RESULTS, count  # noqa: E402

import graphprune  # noqa: E402
from graphprune import Budget  # noqa: E402
from graphprune.data import fashion_mnist  # noqa: E402
from graphprune.files import write_text_atomic  # noqa: E402
from graphprune.latency import Target  # noqa: E402
from graphprune.latency.runners import measure_ms  # noqa: E402
from graphprune.train import evaluate, finetune, finetune_config, load_checkpoint, make_loader  # noqa: E402


@dataclass
class Row:
    model: str
    method: str
    macs_ratio: float
    latency_ratio: float          # measured, in the final interleaved batch with dense and the other method
    acc_pruned: float
    acc_finetuned: float          # mean over seeds
    acc_finetuned_std: float
    seeds: int
    detail: str = ""              # budget used, plans, bisection steps


def macs_uniform_at(teacher, ratio_goal: float, target: Target, steps: int = 7):
    """MACs-uniform pruning with its MACs budget bisected towards a measured latency ratio of ``ratio_goal``;
    returns the candidate measured closest to it (MACs-uniform may not reach it at all: small models at batch 1
    keep per-layer overheads however thin their layers get) as (model, MACs budget, measured ratio)."""
    lo, hi, tried = 0.05, 1.0, []
    for _ in range(steps):
        b = (lo + hi) / 2
        try:
            cand = graphprune.prune(teacher, b, EXAMPLE, strategy="uniform", importance="l1")
        except graphprune.BudgetError:  # below what the floors and menus can reach: go up
            lo = b
            continue
        dense_ms, ms = measure_ms([teacher, cand], EXAMPLE, target)
        tried.append((abs(ms / dense_ms - ratio_goal), cand, b, ms / dense_ms))
        lo, hi = (b, hi) if ms / dense_ms <= ratio_goal else (lo, b)
    if not tried:
        raise RuntimeError("no MACs-uniform budget could be pruned")
    return min(tried, key=lambda t: t[0])[1:]


def fine_tuned(model, teacher, train_set, test_loader, seeds, epochs: int, lr: float) -> list[float]:
    out = []
    for seed in seeds:
        student = copy.deepcopy(model)
        config = finetune_config(epochs=epochs, lr=lr, progress=False, seed=seed)
        finetune(student, make_loader(train_set, 128, seed=seed), config, teacher=teacher)
        out.append(evaluate(student, test_loader))
    return out


def run_model(name: str, args, train_set, test_loader) -> list[Row]:
    teacher = load_checkpoint(REPO / "checkpoints" / f"{name}.pt").build().eval()
    target = Target("ort-cpu", threads=1, batch=1)
    t = time.perf_counter()
    aware = graphprune.prune(teacher, Budget.latency(args.latency), EXAMPLE, target=target, return_result=True)
    aware_s = time.perf_counter() - t
    dense_ms, aware_ms = measure_ms([teacher, aware.model], EXAMPLE, target)
    uniform, b, reached = macs_uniform_at(teacher, aware_ms / dense_ms, target)
    ms = measure_ms([teacher, aware.model, uniform], EXAMPLE, target)  # NOTE: one batch: comparable ratios
    dense_macs = count(teacher)[0]
    rows = []
    for method, model, ratio, detail in (
            ("latency-aware", aware.model, ms[1] / ms[0],
             f"Budget.latency({args.latency}), {aware.report.latency_iterations} plan(s), {aware_s:.0f} s"),
            ("macs-uniform", uniform, ms[2] / ms[0], f"MACs budget {b:.3f} (bisected on measured time; closest "
                                                     f"reached {reached:.3f})")):
        accs = fine_tuned(model, teacher, train_set, test_loader, range(args.seeds), args.ft_epochs, args.ft_lr)
        rows.append(Row(name, method, count(model)[0] / dense_macs, ratio, evaluate(model, test_loader),
                        float(np.mean(accs)), float(np.std(accs)), args.seeds, detail))
        print(rows[-1], flush=True)
    return rows


def markdown(rows: list[Row], args) -> str:
    lines = ["# Accuracy at equal measured latency (`bench/latency_accuracy.py`)", "",
             f"ONNX Runtime CPU, 1 thread, batch 1; latency-aware budget {args.latency} of the dense time; fine-tune: "
             f"KD, {args.ft_epochs} epoch(s) on {args.ft_subset} training images, lr {args.ft_lr}, {args.seeds} "
             f"seed(s); accuracy on {args.test_subset} test images (mean ± std over seeds).", "",
             "| model | method | MACs ratio | measured latency ratio | acc before FT | acc after FT | how |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.method} | {r.macs_ratio:.3f} | {r.latency_ratio:.3f} | {r.acc_pruned:.4f} | "
              f"{r.acc_finetuned:.4f} ± {r.acc_finetuned_std:.4f} | {r.detail} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet56", "mobilenetv2"])
    p.add_argument("--latency", type=float, default=0.5)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--ft-epochs", type=int, default=1)
    p.add_argument("--ft-subset", type=int, default=5000)
    p.add_argument("--ft-lr", type=float, default=0.01)
    p.add_argument("--test-subset", type=int, default=2000)
    p.add_argument("--out", default=str(RESULTS / "latency_accuracy.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    train_set = fashion_mnist("train", subset=args.ft_subset, stratified=True, seed=1)
    test_loader = make_loader(fashion_mnist("test", subset=args.test_subset, stratified=True, seed=0), 500,
                              shuffle=False)
    rows = []
    for name in args.models:
        rows += run_model(name, args, train_set, test_loader)
        out = Path(args.out)
        write_text_atomic(out, json.dumps({"settings": vars(args), "rows": [asdict(r) for r in rows]}, indent=1))
        write_text_atomic(out.with_suffix(".md"), markdown(rows, args))
    print(markdown(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

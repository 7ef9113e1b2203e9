"""Accuracy of pruned baselines: graphprune vs Torch-Pruning at matched MACs.

For every baseline in ``checkpoints/`` (Fashion-MNIST, 28×28×1) and every budget
(fraction of dense MACs kept), three methods prune the same trained network:

=====================  =========================================================================
``gp-uniform-l1``       ``graphprune.prune(strategy="uniform", importance="l1")``
``gp-global-l2``        ``graphprune.prune(strategy="global", importance="l2")``
``tp-magnitude-l1``     Torch-Pruning ``MagnitudePruner`` (L1, per-layer ratio), stepped in
                        ~1% channel increments until its own MACs counter reports ≤ budget
=====================  =========================================================================

Each pruned network is evaluated before fine-tuning, then fine-tuned from the
same state twice with the same short recipe — plain cross-entropy, and with
knowledge distillation from the unpruned network (α=0.5, T=4). MACs and params
are measured on every result with ``FlopCounterMode`` (conv + linear MACs), so
the three methods are compared by one counter, not their own.

NOTE (option-A ResNets): the zero-padding shortcut slices and pads channels.
Torch-Pruning treats that ``pad`` as element-wise and silently produces a model
whose classifier input no longer matches, so here it is restricted to the
channels inside each block (stem and block-output convs in ``ignored_layers``).
graphprune freezes those residual groups itself, with a recorded reason.

Defaults are one seed and small fine-tune and test subsets (CPU budget): differences below
~1.5 points are within noise (binomial s.e. at 2000 test images ≈ 0.7 points). ``--seeds N`` repeats
fine-tuning over N batch orders (``results/accuracy.md`` was run with 3, on a GPU: ``--device cuda``).

Training-time learners (BN-ISTA, Network Slimming, GAL, HSN) and the sensitivity search are compared
with the same baselines in ``bench/learners.py``: a learner spends part of the training budget learning
the mask, so that bench gives every method the same total passes (learning + fine-tuning) instead of
this file's fixed fine-tune.

    python bench/accuracy.py                       # everything (~1 h on one idle core)
    python bench/accuracy.py --models resnet56 --append   # add/redo one model in the same report
    python bench/accuracy.py --models resnet20 --budgets 0.5 --ft-subset 500 --test-subset 500
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import graphprune  # noqa: E402
from graphprune.data import fashion_mnist  # noqa: E402
from graphprune.train import evaluate, finetune, finetune_config, load_checkpoint, make_loader  # noqa: E402

EXAMPLE = torch.zeros(1, 1, 28, 28)
RESULTS = REPO / "bench" / "results"


@dataclass(frozen=True)
class Row:
    """One (model, budget, method) outcome. Accuracies are on the test subset; fine-tuned ones are the
    mean (and population std) over the fine-tuning seeds, which vary the batch order."""

    model: str
    budget: float
    method: str
    macs: float
    params: float
    macs_ratio: float
    params_ratio: float
    acc_pruned: float
    acc_finetuned: float
    acc_finetuned_kd: float
    prune_seconds: float
    finetune_seconds: float
    acc_finetuned_std: float = 0.0
    acc_finetuned_kd_std: float = 0.0
    seeds: int = 1
    ort_ms: float | None = None


def count(model: nn.Module) -> tuple[float, int]:
    """(MACs, params) at 28×28×1 by ``FlopCounterMode`` (FLOPs / 2 of conv + linear)."""
    model = copy.deepcopy(model).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(EXAMPLE)
    return counter.get_total_flops() / 2, sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- methods


def gp_uniform_l1(model: nn.Module, budget: float) -> nn.Module:
    return graphprune.prune(model, budget, example_inputs=EXAMPLE, strategy="uniform", importance="l1")


def gp_global_l2(model: nn.Module, budget: float) -> nn.Module:
    return graphprune.prune(model, budget, example_inputs=EXAMPLE, strategy="global", importance="l2")


def tp_magnitude_l1(model: nn.Module, budget: float, steps: int = 100) -> nn.Module:
    """Torch-Pruning at matched MACs: prune in small steps until its counter says ≤ budget."""
    import torch_pruning as tp

    model = copy.deepcopy(model).eval()
    dense, _ = tp.utils.count_ops_and_params(model, EXAMPLE)
    pruner = tp.pruner.MagnitudePruner(model, EXAMPLE, importance=tp.importance.MagnitudeImportance(p=1),
                                       iterative_steps=steps, pruning_ratio=0.95,
                                       ignored_layers=_tp_ignored(model))
    for _ in range(steps):
        pruner.step()
        macs, _ = tp.utils.count_ops_and_params(model, EXAMPLE)
        if macs <= budget * dense:
            break
    return model


def _tp_ignored(model: nn.Module) -> list[nn.Module]:
    """The classifier, plus (option-A ResNets) every conv whose output meets a padded shortcut."""
    from models.resnet_cifar import BasicBlock, CifarResNet

    if isinstance(model, CifarResNet):
        return [model.fc, model.conv1] + [m.conv2 for m in model.modules() if isinstance(m, BasicBlock)]
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return [last]


METHODS: dict[str, Callable[[nn.Module, float], nn.Module]] = {
    "gp-uniform-l1": gp_uniform_l1,
    "gp-global-l2": gp_global_l2,
    "tp-magnitude-l1": tp_magnitude_l1,
}

# ----------------------------------------------------------------------------- experiment


@dataclass(frozen=True)
class Setup:
    """Data and recipe shared by every run."""

    train_set: torch.utils.data.Dataset
    test_loader: torch.utils.data.DataLoader
    ft_epochs: int
    ft_lr: float
    seeds: tuple[int, ...] = (0,)
    device: str = "cpu"
    latency: bool = False


def run_one(name: str, teacher: nn.Module, budget: float, method: str, setup: Setup, dense: tuple) -> Row:
    start = time.perf_counter()
    pruned = METHODS[method](copy.deepcopy(teacher).eval(), budget)
    prune_seconds = time.perf_counter() - start
    macs, params = count(pruned)
    ort_ms = onnx_latency_ms(pruned) if setup.latency else None
    device = torch.device(setup.device)
    teacher_on_device = copy.deepcopy(teacher).to(device)
    acc_pruned = evaluate(copy.deepcopy(pruned).to(device), setup.test_loader)
    start = time.perf_counter()
    plain, distilled = [], []
    for seed in setup.seeds:
        for kd_teacher, accs in ((None, plain), (teacher_on_device, distilled)):
            student = copy.deepcopy(pruned).to(device, memory_format=torch.channels_last)
            config = finetune_config(epochs=setup.ft_epochs, lr=setup.ft_lr, progress=False, seed=seed)
            finetune(student, make_loader(setup.train_set, 128, seed=seed), config, teacher=kd_teacher)
            accs.append(evaluate(student, setup.test_loader))
    return Row(name, budget, method, macs, params, macs / dense[0], params / dense[1], acc_pruned,
               float(np.mean(plain)), float(np.mean(distilled)), round(prune_seconds, 2),
               round(time.perf_counter() - start, 1), float(np.std(plain)), float(np.std(distilled)),
               len(setup.seeds), ort_ms)


def onnx_latency_ms(model: nn.Module) -> float:
    """Median ONNX Runtime latency (ms) of one 28×28×1 image, one intra-op thread, CPU provider."""
    import tempfile

    from graphprune.export.onnx import export_onnx, ort_latency

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(copy.deepcopy(model).eval().cpu(), EXAMPLE, Path(tmp) / "m.onnx")
        return 1e3 * ort_latency(path, EXAMPLE, runs=200, warmup=20, threads=1)


def run(args: argparse.Namespace) -> dict:
    train_set = fashion_mnist("train", subset=args.ft_subset, stratified=True, seed=1)
    test_set = fashion_mnist("test", subset=args.test_subset, stratified=True, seed=0)
    setup = Setup(train_set, make_loader(test_set, 500, shuffle=False), args.ft_epochs, args.ft_lr,
                  tuple(range(args.seeds)), args.device, args.latency)
    report = merged = _start_report(args)
    for name in args.models:
        teacher = load_checkpoint(REPO / "checkpoints" / f"{name}.pt").build().eval()
        dense = count(teacher)
        report["dense"][name] = {"macs": dense[0], "params": dense[1], "acc": evaluate(teacher, setup.test_loader),
                                 "ort_ms": onnx_latency_ms(teacher) if args.latency else None}
        for budget in args.budgets:
            for method in args.methods:
                row = _safe_run(name, teacher, budget, method, setup, dense)
                if row is not None:
                    report["rows"].append(asdict(row))
                    print(_row_line(row), flush=True)
                merged = write_outputs(report, args.out_prefix, args.models if args.append else None)
    return merged


def _start_report(args: argparse.Namespace) -> dict:
    """A fresh report, or (``--append``) the existing one minus the models about to be rerun."""
    settings = {k: v for k, v in vars(args).items() if k not in ("models", "append", "threads")}
    path = RESULTS / f"{args.out_prefix}.json"
    if not (args.append and path.exists()):
        return {"settings": settings, "dense": {}, "rows": []}
    report = json.loads(path.read_text())
    if report["settings"] != settings:
        raise SystemExit(f"--append needs the settings of {path}: {report['settings']}")
    report["dense"] = {k: v for k, v in report["dense"].items() if k not in args.models}
    report["rows"] = [r for r in report["rows"] if r["model"] not in args.models]
    return report


def _safe_run(name, teacher, budget, method, setup, dense) -> Row | None:
    """A method that crashes or breaks the model is recorded as a failure, not a crash of the bench."""
    try:
        return run_one(name, teacher, budget, method, setup, dense)
    except Exception as error:  # noqa: BLE001 - the failure itself is a result
        print(f"{name} {budget} {method}: FAILED {type(error).__name__}: {error}", flush=True)
        return None


def _row_line(row: Row) -> str:
    return (f"{row.model:12s} {row.budget:.1f} {row.method:16s} MACs {row.macs_ratio:.3f} params {row.params_ratio:.3f} "
            f"acc {row.acc_pruned:.4f} -> ft {row.acc_finetuned:.4f} / kd {row.acc_finetuned_kd:.4f}")


# ----------------------------------------------------------------------------- outputs


def write_outputs(report: dict, prefix: str, models: list[str] | None = None) -> None:
    """Write JSON + Markdown. With ``models`` (``--append``), merge into the file on disk under a lock,
    replacing only those models, so several appending runs can proceed side by side."""
    import fcntl

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{prefix}.json"
    with open(RESULTS / f".{prefix}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if models is not None and path.exists():
            report = _merge(json.loads(path.read_text()), report, models)
        path.write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / f"{prefix}.md").write_text(markdown(report))
    return report


def _merge(on_disk: dict, mine: dict, models: list[str]) -> dict:
    dense = {k: v for k, v in on_disk["dense"].items() if k not in models}
    dense.update({k: v for k, v in mine["dense"].items() if k in models})
    rows = [r for r in on_disk["rows"] if r["model"] not in models] + [r for r in mine["rows"] if r["model"] in models]
    return {"settings": on_disk["settings"], "dense": dense, "rows": rows}


def markdown(report: dict) -> str:
    s = report["settings"]
    seeds = s.get("seeds", 1)
    lines = [
        "# Pruned-baseline accuracy (Fashion-MNIST, 28×28×1)",
        "",
        f"Generated by `bench/accuracy.py`. Fine-tune: {s['ft_epochs']} epoch(s), lr {s['ft_lr']}, "
        f"{s['ft_subset']} train images, on `{s.get('device', 'cpu')}`; KD α=0.5, T=4. Test subset: "
        f"{s['test_subset']} images (s.e. ≈ {100 * (0.9 * 0.1 / s['test_subset']) ** 0.5:.1f} points). "
        f"Fine-tuned accuracies: mean ± std over {seeds} seed(s) (batch order); pruning itself is deterministic.",
        "MACs/params by FlopCounterMode, as a fraction of the dense model. " + _latency_note(report),
        "",
        "| model | dense acc | budget | method | MACs | params | acc pruned | acc FT | acc FT+KD | ORT ms (speed-up) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        dense = report["dense"][r["model"]]
        lines.append(f"| {r['model']} | {dense['acc']:.4f} | {r['budget']:.1f} | {r['method']} | {r['macs_ratio']:.3f} | "
                     f"{r['params_ratio']:.3f} | {r['acc_pruned']:.4f} | {_mean_std(r, 'acc_finetuned')} | "
                     f"{_mean_std(r, 'acc_finetuned_kd')} | {_latency(r, dense)} |")
    return "\n".join(lines) + "\n"


def _latency_note(report: dict) -> str:
    ls = report.get("latency_settings")
    if not ls:
        return ("ORT: ONNX Runtime median latency (ms) of one image, CPU provider, 1 thread (speed-up over the "
                "dense model in brackets).")
    return (f"ORT: ONNX Runtime median latency (ms) at batch {' / '.join(map(str, ls['batches']))}, CPU provider, "
            f"1 thread, on {ls['machine']}; in brackets the speed-up over the dense model timed in alternating "
            f"rounds with it ({ls['rounds']} rounds × {ls['runs']} runs each, `bench/accuracy_latency.py`).")


def _mean_std(row: dict, key: str) -> str:
    return f"{row[key]:.4f}" if row.get("seeds", 1) == 1 else f"{row[key]:.4f} ± {row[key + '_std']:.4f}"


def _latency(row: dict, dense: dict) -> str:
    if row.get("ort"):  # paired measurement by bench/accuracy_latency.py
        return " / ".join(f"{v['pruned_ms']:.2f} ({v['speedup']:.2f}×)" for v in row["ort"].values())
    if row.get("ort_ms") is None or dense.get("ort_ms") is None:
        return "–"
    return f"{row['ort_ms']:.3f} ({dense['ort_ms'] / row['ort_ms']:.2f}×)"


def pareto_plot(report: dict, path: Path) -> None:
    """Accuracy after fine-tuning (KD) vs MACs, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["dense"])
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        dense = report["dense"][name]
        ax.scatter([dense["macs"] / 1e6], [dense["acc"]], marker="*", s=150, color="k", label="dense")
        for method in dict.fromkeys(r["method"] for r in report["rows"]):
            rows = sorted((r for r in report["rows"] if r["model"] == name and r["method"] == method),
                          key=lambda r: r["macs"])
            ax.errorbar([r["macs"] / 1e6 for r in rows], [r["acc_finetuned_kd"] for r in rows],
                        yerr=[r.get("acc_finetuned_kd_std", 0.0) for r in rows], fmt="o-", capsize=3, label=method)
        ax.set(title=name, xlabel="MACs (M) at 28×28×1", ylabel="test accuracy after FT+KD")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def render(paths: list[str], prefix: str) -> None:
    """Merge reports written by separate runs (e.g. one process per model) into one table and plot."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    settings = {k: v for k, v in reports[0]["settings"].items() if k != "out_prefix"}
    for path, other in zip(paths, reports):
        if {k: v for k, v in other["settings"].items() if k != "out_prefix"} != settings:
            raise SystemExit(f"{path} was run with other settings: {other['settings']} vs {settings}")
    merged = {"settings": {**settings, "out_prefix": prefix}, "dense": {}, "rows": []}
    for other in reports:
        merged["dense"].update(other["dense"])
        merged["rows"] += other["rows"]
    write_outputs(merged, prefix)
    pareto_plot(merged, RESULTS / f"{prefix}_pareto.png")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56", "mobilenetv2"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--ft-subset", type=int, default=3000)
    parser.add_argument("--ft-epochs", type=int, default=1)
    parser.add_argument("--ft-lr", type=float, default=0.01)
    parser.add_argument("--test-subset", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="fine-tuning seeds (batch order) per row")
    parser.add_argument("--device", default="cpu", help="where fine-tuning and evaluation run (pruning: CPU)")
    parser.add_argument("--latency", action="store_true", help="add ONNX Runtime latency (1 thread, batch 1)")
    parser.add_argument("--out-prefix", default="accuracy")
    parser.add_argument("--append", action="store_true", help="merge into an existing report (same settings)")
    parser.add_argument("--render", nargs="+", metavar="JSON",
                        help="only merge these per-model reports (same settings) into --out-prefix and redraw")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.render:
        render(args.render, args.out_prefix)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report = run(args)
    if report and report["rows"]:
        pareto_plot(report, RESULTS / f"{args.out_prefix}_pareto.png")


if __name__ == "__main__":
    main()

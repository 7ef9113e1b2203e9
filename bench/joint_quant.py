"""Joint pruning + quantisation vs the baselines, at equal model size (Fashion-MNIST).

For a bundled baseline (``checkpoints/``) and every size budget (fraction of the dense fp32 model's bytes,
predicted by ``graphprune.quantize.cost``), in one harness:

=====================  ================================================================================
``dense-fp32``          the trained model, fp32 ONNX
``quant-only``          int8 PTQ of the dense model (one size, ~0.25; no pruning, no fine-tune)
``prune-uniform+q``     ``compress(strategy="uniform", quantize="int8")``: one keep ratio for all groups
``prune-global+q``      ``compress(strategy="global", quantize="int8")``: one threshold on normalised L2
``joint``               ``compress(strategy="joint", quantize="mixed")``: keep ratio per group and fp32/int8
                        per layer, evolved, scored on held-out train images with the fake-quant simulation
``joint-rl``            ``compress(strategy="rl", quantize="mixed")``: the same space, searched by the
                        hierarchical controller on GCN PruningNet embeddings (``--methods joint-rl``)
=====================  ================================================================================

Every pruned model gets the same short fine-tune (fp32, KD from the dense model), then static int8 PTQ with
its plan's bit-widths (ONNX Runtime, QDQ, per-channel weights, MinMax on 4×64 train images).  Accuracy is
the *ONNX Runtime int8 model's* on a stratified test subset; latency is ORT CPU, 1 thread, batch 1, all
files timed interleaved in rounds, reported as ratios to dense fp32 (the machine is shared and noisy).

    python bench/joint_quant.py                           # resnet20, budgets 0.20 0.15 0.10, 1 seed
    python bench/joint_quant.py --model resnet56 --seeds 0 1 2 --ft-subset 10000
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import graphprune  # noqa: E402
from graphprune.data import fashion_mnist  # noqa: E402
from graphprune.files import write_bytes_atomic, write_text_atomic  # noqa: E402
from graphprune.quantize import QuantBudget, QuantCost, quantize_onnx  # noqa: E402
from graphprune.quantize.ort_ptq import interleaved_ms, ort_run  # noqa: E402
from graphprune.train import evaluate, finetune, finetune_config, load_checkpoint, make_loader  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
EXAMPLE = torch.zeros(1, 1, 28, 28)


@dataclass
class Row:
    model: str
    budget: float | None
    method: str
    seed: int
    size_ratio: float          # predicted size / dense fp32 size
    bops_ratio: float
    onnx_bytes: int            # the deployed file (int8, or fp32 for dense)
    fp32_layers: int
    acc_before_ft: float       # fake-quant simulation, before fine-tuning
    acc_int8: float            # ORT int8 model after fine-tuning (test subset)
    seconds: float
    int8_path: str = ""
    fp32_path: str = ""
    latency_ratio: float | None = None   # ORT int8 ms / dense fp32 ms (interleaved)
    fp32_latency_ratio: float | None = None  # the same model in fp32 / dense fp32


def ort_accuracy(path: Path, test) -> float:
    images, labels = test.tensors
    logits = ort_run(path, images)
    return float((logits.argmax(1) == labels.numpy()).mean())


def finetuned(model, teacher, train_set, args, seed):
    student = copy.deepcopy(model)
    config = finetune_config(epochs=args.ft_epochs, lr=args.ft_lr, progress=False, seed=seed)
    finetune(student, make_loader(train_set, 128, seed=seed), config, teacher=teacher, kd_alpha=0.5)
    return student.eval()


def search_options(strategy: str, args, seed: int) -> dict | None:
    """About the same number of scored candidates for both joint searches (what the evolution scores)."""
    budget = args.population + args.generations * (args.population - max(2, args.population // 2))
    if strategy == "joint":
        return {"population": args.population, "generations": args.generations, "seed": seed}
    if strategy == "rl":
        return {"episodes": max(budget - 3, 3), "batch_episodes": 3, "seed": seed}  # + 2 seeds + 1 greedy rollout
    return None


def run_method(method, teacher, budget, seed, data, args, work: Path) -> Row:
    train_set, test, calib, eval_fn = data
    t = time.perf_counter()
    out = work / f"{method}-{budget}-{seed}.int8.onnx"
    if method == "quant-only":
        graph = graphprune.inspect(teacher, EXAMPLE)
        q = quantize_onnx(graph.traced.gm, EXAMPLE, calib, out)
        cost, full = QuantCost(graph), graph.full_keep()
        acc = ort_accuracy(q.int8_path, test)
        return Row(args.model, None, method, seed, cost.size_bytes(full, {}) / cost.dense("size"),
                   cost.bops(full, {}) / cost.dense("bops"), q.int8_bytes, 0, acc, acc,
                   time.perf_counter() - t, str(q.int8_path), str(q.fp32_path))
    strategy, quantize = {"prune-uniform+q": ("uniform", "int8"), "prune-global+q": ("global", "int8"),
                          "joint": ("joint", "mixed"), "joint-rl": ("rl", "mixed")}[method]
    result = graphprune.compress(teacher, QuantBudget.size(budget), EXAMPLE, quantize=quantize, calib_data=calib,
                                 eval_fn=eval_fn if strategy in ("joint", "rl") else None, strategy=strategy,
                                 out=out, search_options=search_options(strategy, args, seed))
    before = evaluate(result.fake_quant, make_loader(test, 500, shuffle=False))
    student = finetuned(result.model, teacher, train_set, args, seed)
    q = quantize_onnx(student, EXAMPLE, calib, out, result.bitplan.weight_bits)
    result.bitplan.save(out.with_suffix(".plan.json"))
    r = result.report
    return Row(args.model, budget, method, seed, r.size_ratio, r.bops_ratio, q.int8_bytes, r.layers_fp32, before,
               ort_accuracy(q.int8_path, test), time.perf_counter() - t, str(q.int8_path), str(q.fp32_path))


def markdown(report: dict) -> str:
    lines = [f"# Joint pruning + quantisation vs baselines ({report['model']}, Fashion-MNIST)", "",
             report["note"], "", f"Command: `{report['command']}`", "",
             f"Dense fp32: accuracy {report['dense_acc']:.4f}, ONNX {report['dense_bytes']} B, "
             f"{report['dense_ms']:.3f} ms (ORT CPU, 1 thread, batch 1)", "",
             "| budget (size) | method | seed | size ratio (pred.) | ONNX bytes | BOPs ratio | fp32 layers | "
             "acc before FT (sim) | acc int8 (ORT, after FT) | int8 / dense fp32 time | same model fp32 / dense |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['budget'] if r['budget'] is not None else '-'} | {r['method']} | {r['seed']} | "
                     f"{r['size_ratio']:.3f} | {r['onnx_bytes']} | {r['bops_ratio']:.4f} | {r['fp32_layers']} | "
                     f"{r['acc_before_ft']:.4f} | {r['acc_int8']:.4f} | {r['latency_ratio']:.3f} | "
                     f"{r['fp32_latency_ratio']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method in dict.fromkeys(r["method"] for r in report["rows"]):
        rows = [r for r in report["rows"] if r["method"] == method]
        axes[0].plot([r["onnx_bytes"] / 1e3 for r in rows], [r["acc_int8"] for r in rows], "o-", label=method)
        axes[1].plot([r["latency_ratio"] for r in rows], [r["acc_int8"] for r in rows], "o-", label=method)
    axes[0].set_xlabel("ONNX file (kB)")
    axes[1].set_xlabel("ORT time / dense fp32 time")
    for ax in axes:
        ax.set_ylabel("test accuracy (ORT int8)")
        ax.axhline(report["dense_acc"], color="grey", ls=":", label="dense fp32")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{report['model']}: joint vs prune→quantise vs quantise-only")
    fig.tight_layout()
    with tempfile.NamedTemporaryFile(suffix=".png") as tmp:
        fig.savefig(tmp.name, dpi=110)
        write_bytes_atomic(path, Path(tmp.name).read_bytes())


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.20, 0.15, 0.10])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--methods", nargs="+", default=["prune-uniform+q", "prune-global+q", "joint"])
    p.add_argument("--ft-subset", type=int, default=5000)
    p.add_argument("--ft-epochs", type=int, default=1)
    p.add_argument("--ft-lr", type=float, default=0.01)
    p.add_argument("--test-subset", type=int, default=2000)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--prefix", default="joint_quant")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    teacher = load_checkpoint(Path(__file__).resolve().parents[1] / "checkpoints" / f"{args.model}.pt").build().eval()
    train_set = fashion_mnist("train", subset=args.ft_subset, stratified=True, seed=0)
    test = fashion_mnist("test", subset=args.test_subset, stratified=True, seed=0)
    held_out = make_loader(fashion_mnist("train", subset=1000, stratified=True, seed=7), 500, shuffle=False)
    calib = [b for _, b in zip(range(4), make_loader(train_set, 64, seed=0))]
    eval_fn = lambda m: evaluate(m, held_out)  # noqa: E731 (search score: held-out *train* images)
    data = (train_set, test, calib, eval_fn)
    work = Path(tempfile.mkdtemp(prefix="joint_quant_"))
    rows = [run_method("quant-only", teacher, None, 0, data, args, work)]
    for budget in args.budgets:
        for method in args.methods:
            for seed in args.seeds:
                rows.append(run_method(method, teacher, budget, seed, data, args, work))
                print(f"{budget} {method} seed {seed}: acc int8 {rows[-1].acc_int8:.4f} "
                      f"(before FT {rows[-1].acc_before_ft:.4f}), {rows[-1].onnx_bytes} B", flush=True)
    dense_fp32 = Path(rows[0].fp32_path)
    paths = [dense_fp32] + [Path(r.int8_path) for r in rows] + [Path(r.fp32_path) for r in rows]
    ms = interleaved_ms(paths, EXAMPLE, rounds=20, runs=20)
    for i, r in enumerate(rows):
        r.latency_ratio = ms[1 + i] / ms[0]
        r.fp32_latency_ratio = ms[1 + len(rows) + i] / ms[0]
    report = {"model": args.model, "command": "python bench/joint_quant.py " + " ".join(argv or sys.argv[1:]),
              "dense_acc": ort_accuracy(dense_fp32, test), "dense_bytes": dense_fp32.stat().st_size,
              "dense_ms": ms[0], "args": vars(args), "rows": [asdict(r) for r in rows],
              "note": (f"{len(args.seeds)} seed(s), fine-tune {args.ft_epochs} epoch(s) on {args.ft_subset} "
                       f"train images (KD α=0.5), test subset {args.test_subset} (binomial s.e. ≈ "
                       f"{100 * (0.1 / args.test_subset) ** 0.5:.1f} points): differences below ~1.5 points are noise. "
                       "Joint search: population {p}, {g} generations, scored on 1000 held-out train images.".format(
                           p=args.population, g=args.generations))}
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / f"{args.prefix}.json", json.dumps(report, indent=1))
    write_text_atomic(RESULTS / f"{args.prefix}.md", markdown(report))
    plot(report, RESULTS / f"{args.prefix}.png")
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()

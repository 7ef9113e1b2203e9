"""Training-time learners vs one-shot magnitude pruning at matched MACs, under an equal training budget.

For a Fashion-MNIST baseline (``--model``, default ``checkpoints/resnet20.pt``, 28×28×1) and every MACs budget
β ∈ {0.3, 0.5, 0.7} and seed, each method gets the same number of passes over the same train subset:

===============  ==========================================================================================
``bn-ista``       ``learn_epochs`` of BN-γ ISTA (λ calibrated to budget and schedule), then fine-tune the rest
``slimming``      Network Slimming: ``learn_epochs`` of L1-subgradient on γ, global |γ| threshold, fine-tune
``gal``           ``learn_epochs`` of GAL (label-free: logit MSE + adversarial, FISTA masks on channels and
                  residual blocks, λ calibrated to the schedule), then fine-tune
``hsn``           ``learn_epochs`` of HSN (frozen network, GRU gates, FLOPs regulariser), then fine-tune
``uniform-l1``    ``graphprune.prune(strategy="uniform", importance="l1")``, fine-tune all epochs
``global-l1``     ``graphprune.prune(strategy="global", importance="l1")`` (global magnitude), fine-tune all
``sensitivity``   ``graphprune.prune(strategy="sensitivity", importance="l1")``: per-group sensitivity
                  profile scored by accuracy on 256 *training* images (the test split
                  is never used by the search), BN recalibrated on 4 training batches per candidate; fine-tune all
===============  ==========================================================================================

Fine-tuning is plain cross-entropy SGD (lr 0.01, cosine, momentum 0.9), the same for every method;
every pruned network first gets its BatchNorm statistics re-estimated on 8 training batches (the learners
do this in ``fit``; the one-shot methods get the same call), so "acc before FT" compares like with like.
After fine-tuning the statistics are re-estimated again (same 8 batches) for every method; the accuracy
without that step is kept as ``acc_stale_bn``.  NOTE: a 16-step fine-tune moves BatchNorm scales faster
than the running averages (momentum 0.1) follow — after BN-ISTA, whose surviving γ are ~0.03 and grow
2–50× in those steps, the running variances were up to 16× off and accuracy read 0.25 instead of 0.86.
Accuracy is on a stratified test subset; MACs are counted on the pruned module (``count_cost``).

SIZING (CPU is scarce: 2 shared cores): the defaults are small on purpose — a 1,024-image stratified train
subset, 2 epochs in total (1 learning + 1 fine-tuning for learners), 1,000 test images, 3 seeds. With so
little training, accuracies are far below a full schedule; the comparison is between methods at equal
(tiny) budgets, and differences under ~2 points are within seed noise (see the std column).

    python bench/learners.py                              # the full grid (~45 min on one busy core)
    python bench/learners.py --methods gal --budgets 0.5 --seeds 0 --ablations   # GAL ablations
    python bench/learners.py --methods bn-ista gal hsn uniform-l1 --budgets 0.5 --train-subset 4096 \
        --out bench/results/learners_long.json            # longer schedule (4x the steps)
    python bench/learners.py --report-only                # re-render table and plot from the JSON
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import graphprune  # noqa: E402
from graphprune.evaluate import classification_eval_fn  # noqa: E402
from graphprune.data import ImageOptions, load_split  # noqa: E402
from graphprune.learners import GAL, HSN, BNIsta, NetworkSlimming, recalibrate_from_loader  # noqa: E402
from graphprune.train import evaluate, finetune, finetune_config, load_checkpoint, make_loader  # noqa: E402

RESULTS = REPO / "bench" / "results"
EXAMPLE = torch.zeros(1, 1, 28, 28)
LEARNERS = ("bn-ista", "slimming", "gal", "hsn")
ONE_SHOT = ("uniform-l1", "global-l1", "sensitivity")
SEARCH_IMAGES, CALIB_BATCHES = 256, 4  # the sensitivity search's scoring images and BN batches (training set)
BN_BATCHES = 8  # BatchNorm re-estimation before and after fine-tuning (the learners' default bn_batches)


@dataclass(frozen=True)
class Sizing:
    train_subset: int = 1024
    test_subset: int = 1000
    batch: int = 64
    total_epochs: int = 2
    learn_epochs: int = 1
    lr: float = 0.01


@dataclass
class Row:
    method: str
    budget: float
    seed: int
    macs_ratio: float
    params_ratio: float
    acc_before_ft: float
    acc: float
    acc_stale_bn: float
    learned_ratio: float | None
    projected: bool | None
    moved_units: int | None
    removed_blocks: int
    seconds_learn: float
    seconds_ft: float
    revived_groups: int = 0  # emptied groups given pretrained values back (learners/revive.py)


def make_learner(method: str, s: Sizing, seed: int, log_dir: Path, tag: str, **overrides):
    common = dict(epochs=s.learn_epochs, batch_size=s.batch, lr=s.lr, seed=seed, progress=False,
                  log_path=str(log_dir / f"{tag}.json"), plot_path=str(log_dir / f"{tag}.png"))
    table = {
        "bn-ista": lambda: BNIsta(**common, lam=None, sparse_lr=0.05),
        "slimming": lambda: NetworkSlimming(**common, lam=1e-2),
        "gal": lambda: GAL(**common, lam=None, mask_lr=0.05, adv_weight=0.1),
        "hsn": lambda: HSN(**common, reg_weight=2.0, hsn_lr=0.05),
    }
    learner = table[method]()
    return type(learner)(learner.config, **overrides) if overrides else learner


BASELINE = "resnet20"  # set by --model


def baseline():
    """The trained Fashion-MNIST baseline in eval mode (a fresh copy per run)."""
    return load_checkpoint(REPO / "checkpoints" / f"{BASELINE}.pt").build().eval()


def prune_one_shot(method: str, teacher, budget: float, train_set, s: Sizing, seed: int):
    strategy = method.split("-")[0]
    if strategy != "sensitivity":
        return graphprune.prune(teacher, budget, EXAMPLE, strategy=strategy, importance="l1", return_result=True)
    scoring = Subset(train_set, range(0, len(train_set), max(1, len(train_set) // SEARCH_IMAGES)))
    calib = [b for _, b in zip(range(CALIB_BATCHES), make_loader(train_set, s.batch, True, seed))]
    return graphprune.prune(teacher, budget, EXAMPLE, strategy="sensitivity", importance="l1", return_result=True,
                            eval_fn=classification_eval_fn(make_loader(scoring, 256, False)), calib_data=calib)


def run_one(method: str, budget: float, seed: int, data, s: Sizing, tag: str, log_dir: Path, **overrides) -> Row:
    train_set, test_loader = data
    teacher = baseline()
    dense = graphprune.count_cost(teacher, EXAMPLE)
    torch.manual_seed(seed)
    start = time.perf_counter()
    info = dict(learned_ratio=None, projected=None, moved_units=None, removed_blocks=0, revived_groups=0)
    if method in ONE_SHOT:
        pruned, ft_epochs = prune_one_shot(method, teacher, budget, train_set, s, seed).model, s.total_epochs
        recalibrate_from_loader(pruned, make_loader(train_set, s.batch, True, seed), BN_BATCHES)
    else:
        learner = make_learner(method, s, seed, log_dir, tag, **overrides)
        learner.fit(teacher, train_set, budget, EXAMPLE)
        r = learner.result
        pruned, ft_epochs = r.model, s.total_epochs - s.learn_epochs
        info = dict(learned_ratio=r.projection.learned_ratio, projected=r.projection.projected,
                    moved_units=r.projection.moved_units, removed_blocks=len(r.removed.get("blocks", [])),
                    revived_groups=len(r.removed.get("revived", [])))
    learn_s = time.perf_counter() - start
    acc0 = evaluate(pruned, test_loader)
    start = time.perf_counter()
    stale, acc = finetune_and_evaluate(pruned, train_set, test_loader, ft_epochs, s, seed)
    cost = graphprune.count_cost(pruned.eval(), EXAMPLE)
    return Row(method, budget, seed, cost.macs / dense.macs, cost.params / dense.params, acc0, acc, stale,
               seconds_learn=learn_s, seconds_ft=time.perf_counter() - start, **info)


def finetune_and_evaluate(pruned, train_set, test_loader, epochs: int, s: Sizing, seed: int) -> tuple[float, float]:
    """Fine-tune ``pruned`` in place; (accuracy with the running BN statistics, accuracy after re-estimating
    them on ``BN_BATCHES`` training batches).  The model is left re-estimated (module docstring NOTE)."""
    if epochs:
        finetune(pruned, make_loader(train_set, s.batch, True, seed),
                 finetune_config(epochs=epochs, lr=s.lr, kd_alpha=0.0, progress=False, seed=seed))
    stale = evaluate(pruned, test_loader)
    recalibrate_from_loader(pruned, make_loader(train_set, s.batch, True, seed), BN_BATCHES)
    return stale, evaluate(pruned, test_loader)


def load_data(s: Sizing):
    opts = ImageOptions(in_channels=1)
    train = load_split("fashion_mnist", "train", subset=s.train_subset, stratified=True, options=opts)
    test = load_split("fashion_mnist", "test", subset=s.test_subset, stratified=True, options=opts)
    return train, make_loader(test, 250, shuffle=False)


# ---- report -------------------------------------------------------------------------------------------
def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in (r for r in rows if "error" not in r):
        groups.setdefault((r["method"], r["budget"]), []).append(r)
    out = []
    for (method, budget), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        acc = np.array([r["acc"] for r in rs])
        out.append({"method": method, "budget": budget, "n": len(rs),
                    "macs": float(np.mean([r["macs_ratio"] for r in rs])),
                    "macs_max": float(np.max([r["macs_ratio"] for r in rs])),
                    "acc0": float(np.mean([r["acc_before_ft"] for r in rs])),
                    "acc": float(acc.mean()), "std": float(acc.std(ddof=1)) if len(rs) > 1 else 0.0,
                    "stale": _mean([r.get("acc_stale_bn") for r in rs]),
                    "learned": _mean([r["learned_ratio"] for r in rs]),
                    "projected": sum(bool(r["projected"]) for r in rs),
                    "moved": _mean([r["moved_units"] for r in rs]),
                    "blocks": float(np.mean([r["removed_blocks"] for r in rs])),
                    "revived": float(np.mean([r.get("revived_groups", 0) for r in rs])),
                    "seconds": float(np.mean([r["seconds_learn"] + r["seconds_ft"] for r in rs]))})
    return out


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def markdown(summary: list[dict], meta: dict) -> str:
    fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
    lines = [f"# Learners vs one-shot pruning — {meta.get('model', 'resnet20')}, Fashion-MNIST (dense test acc {meta['dense_acc']:.4f})",
             "", f"Sizing: {meta['sizing']}; seeds {meta['seeds']}; command `{meta['command']}`.", "",
             "| budget | method | MACs (mean / max) | acc before FT | acc after FT (mean ± std) | "
             "after FT, BN not re-estimated | learned ratio | projected | units moved | blocks removed | "
             "groups revived | s/run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        lines.append(f"| {r['budget']} | {r['method']} | {r['macs']:.3f} / {r['macs_max']:.3f} | {r['acc0']:.4f} | "
                     f"{r['acc']:.4f} ± {r['std']:.4f} | {fmt(r['stale'], '.4f')} | {fmt(r['learned'], '.3f')} | {r['projected']}/{r['n']} | "
                     f"{fmt(r['moved'], '.0f')} | {r['blocks']:.1f} | {r['revived']:.1f} | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def pareto_png(summary: list[dict], path: Path, dense_acc: float, model: str = "resnet20") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in summary):
        rs = sorted((r for r in summary if r["method"] == method), key=lambda r: r["macs"])
        ax.errorbar([r["macs"] for r in rs], [r["acc"] for r in rs], yerr=[r["std"] for r in rs], marker="o",
                    capsize=3, label=method)
    ax.axhline(dense_acc, color="gray", ls=":", label="dense")
    ax.set_xlabel("MACs ratio (pruned / dense)")
    ax.set_ylabel("test accuracy (subset)")
    ax.set_title(f"{model} / Fashion-MNIST: equal training budget")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(out: Path) -> None:
    body = json.loads(out.read_text())
    summary = summarize(body["rows"])
    body["meta"]["dense_acc"] = body["meta"].get("dense_acc", float("nan"))
    out.with_suffix(".md").write_text(markdown(summary, body["meta"]))
    pareto_png(summary, out.with_suffix(".png"), body["meta"]["dense_acc"], body["meta"].get("model", "resnet20"))
    print(out.with_suffix(".md").read_text())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=list(LEARNERS + ONE_SHOT))
    p.add_argument("--budgets", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default=str(RESULTS / "learners.json"))
    p.add_argument("--ablations", action="store_true", help="GAL: FISTA vs SGD+threshold, with/without adversary")
    p.add_argument("--rerun", action="store_true", help="replace rows already in --out for the selected "
                   "methods, budgets and seeds (default: keep them and skip)")
    p.add_argument("--train-subset", type=int, default=Sizing.train_subset, help="training images (longer schedule)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--model", default="resnet20", choices=["resnet20", "resnet56", "mobilenetv2"],
                   help="which checkpoints/ baseline (use another --out per model)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    if args.report_only:
        return report(out)
    s = Sizing(train_subset=args.train_subset)
    data = load_data(s)
    global BASELINE
    BASELINE = args.model
    dense_acc = evaluate(baseline(), data[1])
    meta = {"sizing": asdict(s), "seeds": args.seeds, "dense_acc": dense_acc, "model": args.model,
            "command": "python bench/learners.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    previous = json.loads(out.read_text()) if out.exists() else {"meta": {}, "rows": []}
    rows = previous["rows"]
    # NOTE: the file names every command whose rows it holds
    earlier = [c for c in previous["meta"].get("command", "").split("; ") if c and c != meta["command"]]
    meta["command"] = "; ".join((earlier if rows else []) + [meta["command"]])
    rows = [r for r in rows if "error" not in r]  # failed runs are retried
    if args.rerun:
        chosen = {m for m, _ in _variants(args)}
        rows = [r for r in rows if not (r["method"] in chosen and r["budget"] in args.budgets and r["seed"] in args.seeds)]
    done = {(r["method"], r["budget"], r["seed"]) for r in rows}
    # NOTE: per output file, so runs of one tag never overwrite; outside git (bench/logs/ is ignored): the logs
    # are regenerated by the commands each results JSON lists in meta.command
    log_dir = REPO / "bench" / "logs" / f"{out.stem}_logs"
    for budget in args.budgets:
        for seed in args.seeds:
            for method, overrides in _variants(args):
                if (method, budget, seed) in done:
                    continue
                base = overrides.pop("_base", method)
                try:
                    row = asdict(run_one(base, budget, seed, data, s, f"{method}_b{budget}_s{seed}", log_dir,
                                         **overrides))
                except Exception as exc:  # NOTE: one failure must not cost the rest of a 40-minute grid
                    print(f"{method} β={budget} seed={seed} FAILED: {type(exc).__name__}: {exc}", flush=True)
                    rows.append({"method": method, "budget": budget, "seed": seed, "error": f"{type(exc).__name__}: {exc}"})
                    _save(out, meta, rows)
                    continue
                row["method"] = method
                rows.append(row)
                _save(out, meta, rows)
                print(f"{method:>14} β={budget} seed={seed}: MACs {row['macs_ratio']:.3f} acc {row['acc_before_ft']:.4f}"
                      f" -> {row['acc']:.4f} ({row['seconds_learn'] + row['seconds_ft']:.0f}s)", flush=True)
    report(out)


def _save(out: Path, meta: dict, rows: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


def _variants(args) -> list[tuple[str, dict]]:
    if not args.ablations:
        return [(m, {}) for m in args.methods]
    return [("gal", {}), ("gal-sgd", {"_base": "gal", "mask_optimizer": "sgd"}),
            ("gal-noadv", {"_base": "gal", "adversarial": False})]


if __name__ == "__main__":
    main()

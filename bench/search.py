"""Search strategies on the Fashion-MNIST ResNet-56 (or ``--model mobilenetv2``) baseline: accuracy, cost, time.

For each budget β (fraction of dense MACs kept) every method produces a keep mask; the rewritten model
is evaluated on a test subset before fine-tuning (as is, and after BatchNorm recalibration on the
calibration batches), fine-tuned with the same short recipe (plain cross-entropy, SGD lr 0.01, cosine,
``--ft-epochs`` on ``--ft-subset`` train images) and evaluated again.

=====================  =====================================================================================
``uniform``, ``global``  ``allocate`` with L2 importance (no evaluation)
``sensitivity``          one profile (groups × levels evaluations, shared by all budgets) + threshold bisection
``evolutionary``         genetic search over projected per-group ratios, per budget
``rl-conditional``       one CACP policy trained once on β ~ U(0.3, 0.8), then ``plan(β)``
``rl-per-budget``        one policy per budget (``budget_range=(β, β)``), same episodes each
``tp-global-l2``         Torch-Pruning ``MagnitudePruner(global_pruning=True, p=2)`` stepped until its MACs
                         counter reports ≤ β (option-A ResNet: stem, block-output convs, classifier ignored —
                         the same channels graphprune freezes)
=====================  =====================================================================================

Search candidates are scored by ``CandidateEvaluator``: masked model, BN recalibrated on ``--calib``
train images, ``eval_fn`` = minus the cross-entropy on ``--eval`` other train images (held out from the
test subset and from fine-tuning).  Also measured: masked evaluation vs rewrite-per-candidate time, and
Kendall τ between the masked-candidate score and fine-tuned accuracy over ``--kendall`` random plans,
with and without the supernet option (``--supernet-steps``; ``search_proxy.py``).

    python bench/search.py                          # defaults sized for ~40 min on one busy core
    python bench/search.py --model mobilenetv2 --out search_mobilenetv2 --supernet-steps 60
    python bench/search.py --only kendall --kendall 16 --supernet-steps 60   # τ section of search.json only
    python bench/search.py --only retest            # the τ plans fine-tuned again: how noisy is the target?
    python bench/search.py --budgets 0.5 --episodes 4 --kendall 3 --ft-subset 200 --test 200   # smoke
    python bench/search.py --render bench/results/search.json     # table + plot again from the JSON

Study mode (issue 12; ``search_study.py``, ``search_study_report.py``): ``--seeds`` repeats search and
fine-tune per seed for every ``--models`` entry and writes the merged report of every part in the part folder
(mean ± std over seeds, search cost, best rule vs best learned, RL reward flattening) to
``bench/results/<--out>.{json,md,png}``, or to ``<part folder>/report/`` when ``--out`` is not given::

    python bench/search.py --models resnet56 mobilenetv2 --seeds 0 1 2 --test 1000 --ft-subset 1000 \
        --episodes 200 --population 16 --generations 8 --out search_study
    python bench/search.py --models resnet56 --seeds 0 --budgets 0.3 --episodes 2 --test 100 --ft-subset 64 \
        --methods uniform rl-per-budget --out /tmp/smoke       # smoke

Widths are exact (``round_to=1``) in both modes: ResNet-56's default width menus stop at 0.21 of its MACs.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import graphprune  # noqa: E402
from graphprune import Budget  # noqa: E402
from graphprune.data import ImageOptions, load_split  # noqa: E402
from graphprune.evaluate import CandidateEvaluator, EvalConfig, classification_eval_fn, recalibrate_bn  # noqa: E402
from graphprune.importance import score_units  # noqa: E402
from graphprune.passes import rewrite  # noqa: E402
from graphprune.search import SearchContext, allocate  # noqa: E402
from graphprune.search.conditional import ConditionalSearch, RLConfig  # noqa: E402
from graphprune.search.evolution import EvolutionConfig, evolutionary_search  # noqa: E402
from graphprune.search.sensitivity import SensitivityConfig, sensitivity_profile, sensitivity_search  # noqa: E402
from graphprune.train import evaluate, finetune, finetune_config, load_checkpoint, make_loader  # noqa: E402
sys.path.insert(0, str(REPO / "bench"))
from search_proxy import kendall, kendall_markdown, retest  # noqa: E402
from search_study import ALLOC, METHODS, run_cell, run_study  # noqa: E402

EXAMPLE = torch.zeros(1, 1, 28, 28)
RESULTS = REPO / "bench" / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------- data
def batches(dataset, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = dataset.tensors
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(y), size)]


def load_data(args, seed: int = 0):
    """calib, held-out, fine-tune and test batches; ``seed`` picks the fine-tune order and the test subset."""
    opts = ImageOptions(in_channels=1)
    n_search = args.calib + args.eval
    train = load_split("fashion_mnist", "train", subset=n_search + args.ft_subset, stratified=True, seed=1,
                       options=opts)
    x, y = train.tensors
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    split = lambda a, b: torch.utils.data.TensorDataset(x[a:b], y[a:b])
    calib, held, ft = split(0, args.calib), split(args.calib, n_search), split(n_search, len(y))
    test = load_split("fashion_mnist", "test", subset=args.test, stratified=True, seed=seed, options=opts)
    return batches(calib, 64), batches(held, 64), make_loader(ft, 64, seed=seed), make_loader(test, 250, shuffle=False)


# -------------------------------------------------------------------------------------------- methods
def tp_global(model: nn.Module, budget: float, steps: int = 100) -> nn.Module:
    """Torch-Pruning global magnitude (L2), stepped until its MACs counter reports <= budget.

    Ignored layers = the channels graphprune freezes: the classifier, and on the option-A ResNets also the
    stem and block-output convs (their zero-padded shortcuts tie them).
    """
    import torch_pruning as tp
    from models.resnet_cifar import BasicBlock

    model = copy.deepcopy(model).eval()
    if hasattr(model, "classifier"):  # MobileNetV2, VGG-16: graphprune freezes only the model output
        # NOTE: VGG's classifier is Linear-BN-ReLU-Linear; ignoring the whole Sequential would also freeze the
        # hidden Linear(512, 512) that graphprune prunes, so only the last Linear is ignored
        linears = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)]
        ignored = linears[-1:]
    else:
        ignored = [model.fc, model.conv1] + [m.conv2 for m in model.modules() if isinstance(m, BasicBlock)]
    dense, _ = tp.utils.count_ops_and_params(model, EXAMPLE)
    pruner = tp.pruner.MagnitudePruner(model, EXAMPLE, importance=tp.importance.MagnitudeImportance(p=2),
                                       global_pruning=True, iterative_steps=steps, pruning_ratio=0.95,
                                       ignored_layers=ignored)
    for _ in range(steps):
        pruner.step()
        if tp.utils.count_ops_and_params(model, EXAMPLE)[0] <= budget * dense:
            break
    return model


def finish(name: str, budget: float, model: nn.Module, seconds: float, setup: dict, extra: dict) -> dict:
    """Test accuracy before FT (as is, BN-recalibrated), fine-tune, after; MACs and params."""
    cost = graphprune.count_cost(model, EXAMPLE)
    dense = setup["dense"]
    row = {"method": name, "budget": budget, "macs_ratio": cost.macs / dense.macs,
           "params_ratio": cost.params / dense.params, "search_seconds": seconds, **extra}
    row["acc_before"] = evaluate(model, setup["test"])
    recalibrate_bn(model, setup["calib"])
    row["acc_recal"] = evaluate(model, setup["test"])
    t = time.perf_counter()
    cfg = finetune_config(epochs=setup["args"].ft_epochs, lr=0.01, kd_alpha=0.0, progress=False)
    finetune(model, setup["ft"], cfg)
    row["ft_seconds"] = time.perf_counter() - t
    row["acc_after"] = evaluate(model, setup["test"])
    log(f"{name:15s} β={budget:.2f} MACs {row['macs_ratio']:.3f} acc {row['acc_before']:.3f} / "
        f"{row['acc_recal']:.3f} -> {row['acc_after']:.3f} (search {seconds:.1f}s)")
    return row


def gp_row(name, budget, graph, keep, seconds, setup, evaluator, extra=None) -> dict:
    score = evaluator(keep)
    return finish(name, budget, rewrite(graph, keep), seconds, setup, {"search_score": score, **(extra or {})})


# --------------------------------------------------------------------------------- measurements
def eval_speed(graph, evaluator, ctx, setup, n: int = 4) -> dict:
    """Per-candidate seconds: masked + recalibrate + eval_fn vs rewrite + recalibrate + eval_fn."""
    rng = np.random.default_rng(0)
    keeps = [ctx.project(rng.uniform(0.2, 1.0, len(ctx.n))).keep for _ in range(n)]
    t = time.perf_counter()
    masked = [float(evaluator.eval_fn(evaluator.model(k))) for k in keeps]
    t_masked = (time.perf_counter() - t) / n
    t = time.perf_counter()
    rewritten = []
    for k in keeps:
        m = rewrite(graph, k)
        recalibrate_bn(m, setup["calib"])
        rewritten.append(float(evaluator.eval_fn(m)))
    t_rewrite = (time.perf_counter() - t) / n
    return {"candidates": n, "masked_seconds": t_masked, "rewrite_seconds": t_rewrite,
            "speedup": t_rewrite / t_masked, "max_score_diff": float(np.max(np.abs(np.subtract(masked, rewritten))))}


# ------------------------------------------------------------------------------------------- methods
def methods(report, model, graph, scores, evaluator, ctx_of, setup) -> None:
    """Every method at every budget: one row each (see module docstring)."""
    args = setup["args"]
    save = lambda: write(report, args.out)
    report["eval_speed"] = eval_speed(graph, evaluator, ctx_of[args.budgets[len(args.budgets) // 2]], setup)
    log(f"eval speed: {report['eval_speed']}")
    save()
    for b in args.budgets:
        for strategy in ("uniform", "global"):
            t = time.perf_counter()
            keep = allocate(graph, scores, Budget.macs(b), strategy, ALLOC).keep
            report["rows"].append(gp_row(strategy, b, graph, keep, time.perf_counter() - t, setup, evaluator))
        t = time.perf_counter()
        pruned = tp_global(model, b)
        report["rows"].append(finish("tp-global-l2", b, pruned, time.perf_counter() - t, setup, {}))
        save()
    levels = SensitivityConfig(tuple(args.levels))
    t = time.perf_counter()
    drops = sensitivity_profile(ctx_of[args.budgets[0]], levels)
    profile_seconds = time.perf_counter() - t
    report["sensitivity_profile_seconds"] = profile_seconds
    log(f"sensitivity profile: {profile_seconds:.1f}s")
    for b in args.budgets:
        r = sensitivity_search(ctx_of[b], levels, drops)
        report["rows"].append(gp_row("sensitivity", b, graph, r.keep, r.seconds + profile_seconds / len(args.budgets),
                                     setup, evaluator, {"profile_seconds_shared": profile_seconds}))
        save()
    for b in args.budgets:
        r = evolutionary_search(ctx_of[b], EvolutionConfig(population=args.population, generations=args.generations))
        report["rows"].append(gp_row("evolutionary", b, graph, r.keep, r.seconds, setup, evaluator,
                                     {"evaluations": r.evaluations}))
        save()
    rl_config = RLConfig(budget_range=(0.3, 0.8), batch_episodes=4, init="none")  # NOTE: the runs on record
    cond = ConditionalSearch.from_context(ctx_of[args.budgets[0]], rl_config)
    t = time.perf_counter()
    cond.fit(args.episodes, progress=False)
    fit_seconds = time.perf_counter() - t
    cond.save(RESULTS / f"{args.out}_policy.pt")
    cond.plot_rewards(RESULTS / f"{args.out}_rl_rewards.png")
    report["rl_conditional"] = {"episodes": args.episodes, "fit_seconds": fit_seconds, "history": cond.history}
    log(f"conditional policy: {args.episodes} episodes in {fit_seconds:.1f}s")
    for b in args.budgets:
        r = cond.search_result(b)
        report["rows"].append(gp_row("rl-conditional", b, graph, r.keep, r.seconds + fit_seconds / len(args.budgets),
                                     setup, evaluator, {"projection": r.info["projection"],
                                                        "fit_seconds_shared": fit_seconds}))
        save()
    for b in args.budgets:
        per = ConditionalSearch.from_context(ctx_of[b], replace(rl_config, budget_range=(b, b)))
        t = time.perf_counter()
        per.fit(args.episodes, progress=False)
        r = per.search_result(b)
        report["rows"].append(gp_row("rl-per-budget", b, graph, r.keep, time.perf_counter() - t, setup, evaluator,
                                     {"projection": r.info["projection"]}))
        save()


# ------------------------------------------------------------------------------------------- driver
def run(args) -> dict:
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ckpt = REPO / "checkpoints" / f"{args.model}.pt"
    model = load_checkpoint(ckpt).build().eval()
    calib, held, ft, test = load_data(args, seed=1 if args.only == "retest" else 0)
    graph = graphprune.inspect(model, EXAMPLE)
    setup = {"args": args, "calib": calib, "ft": ft, "test": test, "dense": graph.cost()}
    scores = score_units(graph, "l2")
    evaluator = CandidateEvaluator(graph, classification_eval_fn(held, "neg_loss"), calib,
                                   EvalConfig(calib_batches=len(calib)))
    previous = RESULTS / f"{args.out}.json"
    if args.only in ("kendall", "retest") and previous.exists():  # add to an earlier full run
        report = json.loads(previous.read_text())
    else:
        report = {"config": dict(vars(args)), "model": args.model, "rows": [],
                  "dense_test_acc": evaluate(model, test), "dense_score": evaluator(graph.full_keep())}
    ctx_of = {b: SearchContext(graph, scores, Budget.macs(b), ALLOC, progress=False, evaluator=evaluator,
                               lowest_budget=Budget.macs(min(args.budgets))) for b in args.budgets}
    ctx = ctx_of[0.5 if 0.5 in ctx_of else args.budgets[0]]
    if args.only == "retest":
        report["kendall"]["retest"] = {**retest(graph, ctx, setup, report["kendall"], log),
                                       "wall_seconds": time.perf_counter() - start}
        write(report, args.out)
        return report
    if args.only != "kendall":
        methods(report, model, graph, scores, evaluator, ctx_of, setup)
    if args.kendall:
        report["kendall"] = {**kendall(graph, evaluator, ctx, setup, args.kendall, log), "config": dict(vars(args))}
    if args.only != "kendall":
        report["evaluator"] = {"calls": evaluator.calls, "seconds": evaluator.seconds}
        report["wall_seconds"] = time.perf_counter() - start
    write(report, args.out)
    return report


def study(args) -> dict:
    """Study mode (``search_study.run_study``), logging as this script does."""
    return run_study(args, log, RESULTS)


# ------------------------------------------------------------------------------------------- outputs
def markdown(report: dict) -> str:
    lines = [f"# Search strategies — {report['model']} on Fashion-MNIST", "",
             f"Dense: test acc {report['dense_test_acc']:.4f}; config `{json.dumps(report['config'])}`", "",
             "| method | β | MACs | params | search score | acc before FT | acc BN-recal | acc after FT | search s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(report["rows"], key=lambda r: (r["budget"], r["method"])):
        score = f"{r['search_score']:.4f}" if "search_score" in r else "—"
        lines.append(f"| {r['method']} | {r['budget']:.2f} | {r['macs_ratio']:.3f} | {r['params_ratio']:.3f} | "
                     f"{score} | {r['acc_before']:.4f} | {r['acc_recal']:.4f} | {r['acc_after']:.4f} | "
                     f"{r['search_seconds']:.1f} |")
    lines += _conditional_vs_per_budget(report)
    if "eval_speed" in report:
        s = report["eval_speed"]
        lines += ["", f"Candidate evaluation: masked {s['masked_seconds']:.2f}s vs rewrite {s['rewrite_seconds']:.2f}s "
                      f"per candidate (×{s['speedup']:.2f}); max score difference {s['max_score_diff']:.2e}."]
    lines += kendall_markdown(report)
    n_test = report["config"].get("test", 0)
    lines += ["", f"Noise: one seed; test subset of {n_test} images (binomial s.e. ≈ "
                  f"{100 * (0.7 * 0.3 / max(n_test, 1)) ** 0.5:.1f} points at 70%); fine-tune = "
                  f"{report['config'].get('ft_epochs')} epoch on {report['config'].get('ft_subset')} images. "
                  "Differences of a few points are within noise. 'search score' is minus the cross-entropy of the "
                  "masked, BN-recalibrated candidate on the held-out search images (higher is better). "
                  "tp-global-l2 stops at the first step its own MACs counter puts at or below β; the MACs column "
                  "is graphprune's count of the result, which can differ by a little."]
    if "wall_seconds" in report:
        lines += ["", f"Wall time {report['wall_seconds'] / 60:.0f} min for the whole run (one thread on a 2-core "
                      "machine shared with other jobs; the ResNet-56 and MobileNetV2 runs ran side by side)."]
    return "\n".join(lines) + "\n"


def _conditional_vs_per_budget(report: dict) -> list[str]:
    rows = {(r["method"], r["budget"]): r for r in report["rows"]}
    budgets = sorted({b for m, b in rows if m == "rl-conditional" and ("rl-per-budget", b) in rows})
    if not budgets:
        return []
    cond = report.get("rl_conditional", {}).get("fit_seconds", 0.0)
    per = sum(rows[("rl-per-budget", b)]["search_seconds"] for b in budgets)
    diffs = ", ".join(f"β={b}: {rows[('rl-conditional', b)]['acc_after'] - rows[('rl-per-budget', b)]['acc_after']:+.4f}"
                      for b in budgets)
    return ["", f"Conditional policy (trained once, {cond:.0f}s) vs one policy per budget ({per:.0f}s in total): "
                f"accuracy after fine-tune, conditional − per-budget: {diffs}."]


def pareto_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method in sorted({r["method"] for r in report["rows"]}):
        rows = sorted((r for r in report["rows"] if r["method"] == method), key=lambda r: r["macs_ratio"])
        ax.plot([r["macs_ratio"] for r in rows], [r["acc_after"] for r in rows], "o-", label=method)
    ax.axhline(report["dense_test_acc"], color="grey", ls="--", label="dense")
    ax.set(xlabel="MACs kept (fraction of dense)", ylabel="test accuracy after fine-tune",
           title=f"{report['model']} Fashion-MNIST: accuracy vs MACs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(report: dict, prefix: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{prefix}.json").write_text(json.dumps(report, indent=1, default=float))
    (RESULTS / f"{prefix}.md").write_text(markdown(report))
    if report["rows"]:
        pareto_plot(report, RESULTS / f"{prefix}_pareto.png")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet56" if (REPO / "checkpoints" / "resnet56.pt").exists() else "resnet20")
    p.add_argument("--models", nargs="+", help="study mode: these checkpoints/<model>.pt (with --seeds)")
    p.add_argument("--seeds", type=int, nargs="+", help="study mode: repeat search + fine-tune per seed")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="study mode: methods run")
    p.add_argument("--part-dir", default=None, help="study mode: per-(model, seed) JSON parts (default: "
                   "$TMPDIR/graphprune_<out>_parts); existing parts are merged into the report")
    p.add_argument("--resume", action="store_true", help="study mode: skip (method, β) rows already in the parts")
    p.add_argument("--rd-points", type=int, default=6, help="study mode: widths measured per rate-distortion curve")
    p.add_argument("--checkpoints", default=str(REPO / "checkpoints"))
    p.add_argument("--rl-reward-steps", type=int, default=2, help="rl-warm-ft: SGD steps before the reward")
    p.add_argument("--rl-reward-batch", type=int, default=32, help="rl-warm-ft: images per reward SGD step")
    p.add_argument("--rl-reward-lr", type=float, default=0.01, help="rl-warm-ft: reward SGD learning rate")
    p.add_argument("--rl-init", default="best-rule", choices=["none", "uniform", "global", "best-rule"],
                   help="rl-warm-ft: the rule the policy starts from")
    p.add_argument("--rl-baseline", default="ema", choices=["ema", "uniform"], help="rl-warm-ft: advantage baseline")
    p.add_argument("--rl-concentration", type=float, default=24.0, help="rl-warm-ft: Beta concentration at start")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.15, 0.3, 0.5])
    p.add_argument("--calib", type=int, default=64, help="train images for BN recalibration")
    p.add_argument("--eval", type=int, default=64, help="held-out train images scoring candidates")
    p.add_argument("--test", type=int, default=400, help="test images (stratified subset)")
    p.add_argument("--ft-subset", type=int, default=600)
    p.add_argument("--ft-epochs", type=int, default=1)
    p.add_argument("--levels", type=float, nargs="+", default=[0.2, 0.5])
    p.add_argument("--population", type=int, default=6)
    p.add_argument("--generations", type=int, default=2)
    p.add_argument("--episodes", type=int, default=24)
    p.add_argument("--kendall", type=int, default=10, help="random plans for the Kendall τ section (0: skip)")
    p.add_argument("--supernet-steps", type=int, default=0, help="also score the Kendall plans on a supernet")
    p.add_argument("--only", choices=["all", "kendall", "retest"], default="all",
                   help="kendall: only the Kendall section, merged into an existing --out JSON; retest: fine-tune "
                        "its plans again (other data order, other test subset) to measure the target's noise")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="result name under bench/results (default: search; study mode: the merged "
                   "report goes to <part folder>/report/ unless --out is given)")
    args = p.parse_args(argv)
    args.out = args.out if args.out or args.seeds is not None else "search"
    return args


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--render":  # re-render table and plot from a results JSON
        write(json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[2]).stem)
    else:
        parsed = parse_args()
        study(parsed) if parsed.seeds is not None else run(parsed)

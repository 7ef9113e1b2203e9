"""Issue 12 follow-up: does the RL allocation earn its place once its reward is fixed?

Runner for the study method ``rl-warm-ft`` (``search_study.py``): one CACP policy per budget, like
``rl-per-budget``, with the options of ``graphprune.search.reward``:

* reward after ``--rl-reward-steps`` SGD steps (lr ``--rl-reward-lr``, momentum 0.9) on the first
  ``--rl-reward-steps`` batches of ``--rl-reward-batch`` fine-tune images of the seed's split, BN re-estimated,
  then −CE on the held-out search images (``FinetunedEvaluator``; 0 steps = the plain masked reward);
* the policy started at ``--rl-init`` (default: the better of uniform / global by that reward);
* ``--rl-baseline``: ``ema`` (moving average, as before) or ``uniform`` (R − the uniform plan's reward).

The rows' ``search_score`` is the *plain* masked score (the study's column, comparable with every other
method); the reward the policy saw is in ``rl_histories``.  ``evaluations`` counts the fine-tuned-reward
evaluations (each costs ≈ 1 + 3·steps·batch/64 masked evaluations; ``reward_cost`` in the row).

    python bench/search.py --models mobilenetv2 --seeds 0 1 2 --budgets 0.15 --methods rl-warm-ft \\
        --test 1000 --ft-subset 512 --calib 64 --eval 64 --episodes 40 --part-dir /tmp/rl/parts --resume
    python bench/search_rl_reward.py /tmp/rl/parts/*.json bench/results/search_study.json   # the write-up data
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from graphprune.search.conditional import ConditionalSearch, RLConfig
from graphprune.search.reward import finetuned_evaluator

RESULTS = Path(__file__).resolve().parent / "results"


def reward_batches(cell, size: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` batches of ``size`` images of the seed's fine-tune split (fixed: same reward per plan)."""
    x, y = cell.ft.dataset.tensors
    return [(x[i:i + size], y[i:i + size]) for i in range(0, min(len(y), size * count), size)]


def rl_options(args) -> dict:
    return {"reward_steps": args.rl_reward_steps, "reward_batch": args.rl_reward_batch, "reward_lr": args.rl_reward_lr,
            "init": args.rl_init, "baseline": args.rl_baseline, "concentration": args.rl_concentration}


def run_rl_options(cell, method: str, out: dict, save) -> None:
    """One policy per budget with the reward options; a study row (fine-tuned from the original weights) per β."""
    opts = rl_options(cell.args)
    reward_eval = finetuned_evaluator(cell.evaluator, reward_batches(cell, opts["reward_batch"], max(opts["reward_steps"], 1)),
                                      steps=opts["reward_steps"], lr=opts["reward_lr"])
    config = RLConfig(batch_episodes=4, seed=cell.seed, baseline=opts["baseline"], init=opts["init"],
                      init_concentration=opts["concentration"])
    for b in cell.todo(method):
        reward_eval._cache.clear()
        calls, start = reward_eval.calls, time.perf_counter()
        search = ConditionalSearch.from_context(replace(cell.ctx[b], evaluator=reward_eval),
                                                replace(config, budget_range=(b, b)))
        search.fit(cell.args.episodes, progress=False)
        r = search.search_result(b)
        evals, secs = reward_eval.calls - calls, time.perf_counter() - start
        name = f"warm-ft-per-budget-{b}"
        out["rl_histories"][name] = [h["reward"] for h in search.history]
        out.setdefault("rl_uniform_scores", {})[name] = search.uniform_reward(b)  # NOTE: on the policy's reward
        prior = search._priors.get(round(b, 3))
        out["rows"].append(cell.keep_row(method, b, r.keep, evals, secs, projection=r.info["projection"],
                                         rl_options=opts, init_rule=prior[1] if prior else None,
                                         episode_seconds=[h["seconds"] for h in search.history]))
        save()


# ---------------------------------------------------------------------------------------------- τ
def _taus(rows: list[dict]) -> dict:
    from search_proxy import _tau

    if not all("target" in r for r in rows):
        return {}
    names = [n for n in ("masked", "finetuned_reward", "supernet") if rows and all(n in r for r in rows)]
    return {n: _tau([r[n] for r in rows], [r["target"] for r in rows]) for n in names} if len(rows) > 2 else {}


def tau_study(args, log=print) -> dict:
    """Kendall τ of three proxies vs fine-tuned accuracy over ``args.kendall`` random plans per budget.

    Proxies, all on the same plans (``search_proxy.random_plans``) and held-out images: the plain masked score
    (original weights), the fine-tuned reward (``FinetunedEvaluator``, the RL option), and the masked score on
    supernet weights (``--supernet-steps``, trained once with β ~ U(``--tau-supernet-range``)).  Target: the
    plan rewritten from the original weights, BN-recalibrated, fine-tuned with the study's recipe, tested.
    """
    import graphprune
    from graphprune import Budget
    from graphprune.evaluate import CandidateEvaluator, EvalConfig, classification_eval_fn
    from graphprune.importance import score_units
    from graphprune.search import SearchContext, SupernetConfig
    from graphprune.search.supernet import supernet_graph
    from graphprune.train import evaluate, load_checkpoint
    from search import ALLOC, EXAMPLE, load_data
    from search_proxy import _finetuned, random_plans

    torch.manual_seed(0)
    model = load_checkpoint(Path(args.checkpoints) / f"{args.model}.pt").build().eval()
    calib, held, ft, test = load_data(args)
    graph = graphprune.inspect(model, EXAMPLE)
    scores = score_units(graph, "l2")
    plain = CandidateEvaluator(graph, classification_eval_fn(held, "neg_loss"), calib, EvalConfig(calib_batches=len(calib)))
    x, y = ft.dataset.tensors
    tuned = finetuned_evaluator(plain, [(x[i:i + args.rl_reward_batch], y[i:i + args.rl_reward_batch])
                                        for i in range(0, args.rl_reward_batch * args.rl_reward_steps, args.rl_reward_batch)],
                                steps=args.rl_reward_steps, lr=args.rl_reward_lr)
    setup = {"args": args, "calib": calib, "ft": ft, "test": test}
    out = {"model": args.model, "config": dict(vars(args)), "dense_test_acc": evaluate(model, test), "budgets": {}}
    path = Path(args.out)
    save = lambda: path.write_text(json.dumps(out, indent=1, default=float))
    plans = {}
    for b in args.budgets:  # NOTE: the plain proxies and targets first; the supernet (slowest to pay off) last
        ctx = SearchContext(graph, scores, Budget.macs(b), ALLOC, plain, 0, False)
        plans[b] = random_plans(ctx, args.kendall)
        rows = [{"ratio": ctx.ratio_of(keep)} for keep in plans[b]]
        out["budgets"][str(b)] = {"plans": rows, "tau": {}}
        if args.tau_supernet_only:  # NOTE: another process measures the targets of the same plans (merge_tau)
            continue
        order = range(len(rows))[::-1] if args.tau_reverse else range(len(rows))  # NOTE: two processes, one list
        for i in order:
            keep, row = plans[b][i], rows[i]
            for name, ev in (("masked", plain), ("finetuned_reward", tuned)):
                t = time.perf_counter()
                row[name] = ev(keep)
                row[f"{name}_seconds"] = time.perf_counter() - t
            t = time.perf_counter()
            row["target"] = _finetuned(graph, keep, setup)
            row["target_seconds"] = time.perf_counter() - t
            log(f"τ β={b} plan {i + 1}/{len(plans[b])}: {row}")
            out["budgets"][str(b)] = {"plans": rows, "tau": _taus(rows)}
            save()
    if args.supernet_steps:
        t = time.perf_counter()
        lo, hi = args.tau_supernet_range
        sn_graph, result = supernet_graph(graph, scores, ft.dataset, SupernetConfig(
            steps=args.supernet_steps, batch_size=64, budget_range=(lo, hi), progress=False), ALLOC, "macs")
        sn = CandidateEvaluator(sn_graph, plain.eval_fn, calib, plain.config)
        out["supernet"] = {**result.summary(), "budget_range": [lo, hi], "train_seconds": time.perf_counter() - t,
                           "full_test_acc": evaluate(sn_graph.traced.gm, test), "losses": result.losses}
        log(f"supernet {out['supernet']}")
        for b in args.budgets:
            rows = out["budgets"][str(b)]["plans"]
            for row, keep in zip(rows, plans[b]):
                t = time.perf_counter()
                row["supernet"] = sn(keep)
                row["supernet_seconds"] = time.perf_counter() - t
            out["budgets"][str(b)]["tau"] = _taus(rows)
            save()
    return out


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "tau":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from search import parse_args

    argv = sys.argv[2:]
    extra = argv.index("--tau-supernet-range") if "--tau-supernet-range" in argv else None
    rng = (0.1, 0.4)
    only, reverse = "--tau-supernet-only" in argv, "--tau-reverse" in argv
    argv = [a for a in argv if a not in ("--tau-supernet-only", "--tau-reverse")]
    if extra is not None:
        rng = (float(argv[extra + 1]), float(argv[extra + 2]))
        argv = argv[:extra] + argv[extra + 3:]
    a = parse_args(argv)
    a.tau_supernet_range, a.tau_supernet_only, a.tau_reverse = rng, only, reverse
    tau_study(a, lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True))


# ------------------------------------------------------------------------------------------- report
def build(parts: list[dict], study: dict, tau: dict | None, notes: list[str]) -> dict:
    """Rows of the new runs beside the study's rows at the same (model, β); curves, flattening, τ."""
    import search_study_report as ssr

    merged = ssr.build([study, *parts])  # NOTE: new parts replace nothing: new (method, β) keys or missing rows
    cells = sorted({(r["model"], r["budget"]) for p in parts for r in p["rows"]})
    agg = [c for c in merged["aggregate"] if (c["model"], c["budget"]) in cells]
    rows = {(r["model"], r["seed"], r["method"], r["budget"]): r for r in merged["rows"]}
    versus = []
    for model, b in cells:
        here = [c for c in agg if c["model"] == model and c["budget"] == b]
        rules = [c for c in here if c["family"] == "rule"]
        for c in (c for c in here if c["method"].startswith("rl-")):
            for metric in ("acc_after", "acc_recal"):
                best = max(rules, key=lambda r: r[metric])
                d = [rows[(model, s, c["method"], b)][metric] - rows[(model, s, best["method"], b)][metric]
                     for s in c["seeds"] if (model, s, best["method"], b) in rows]
                m, sd = ssr._ms(d)
                versus.append({"model": model, "budget": b, "method": c["method"], "metric": metric,
                               "best_rule": best["method"], "rule_acc": best[metric], "acc": c[metric],
                               "paired_mean": m, "paired_std": sd, "seeds": len(d)})
    curves = []
    for f in merged["rl_flattening"]:
        key, name = f["run"].split(" ", 1)
        if not any(key.startswith(m + "/") for m, _ in cells) or "per-budget" not in name:
            continue
        budget = float(name.rsplit("-", 1)[1])
        if (key.split("/")[0], budget) not in cells:
            continue
        rewards = np.array(merged["rl_histories"][key][name])
        u = f["uniform_score"]
        curves.append({**f, "model": key.split("/")[0], "budget": budget, "reward": "fine-tuned"
                       if name.startswith("warm-ft") else "masked", "rewards": rewards.tolist(),
                       "beats_uniform": float(np.mean(rewards > u)) if u is not None else None})
    return {"cells": cells, "aggregate": agg, "versus": versus, "curves": curves, "tau": tau, "notes": notes,
            "new_parts": [{"model": p["model"], "seed": p["seed"], "config": {k: p["config"].get(k) for k in (
                "episodes", "rl_reward_steps", "rl_reward_batch", "rl_reward_lr", "rl_init", "rl_baseline",
                "rl_concentration", "test", "ft_subset", "calib", "eval")}} for p in parts]}


def merge_tau(runs: list[dict]) -> dict | None:
    """One τ section from runs over the same plans (same model, data and plan seed): per budget, per plan, the union
    of the proxies and the target each run measured; τ recomputed."""
    if not runs:
        return None
    out = {**runs[0], "budgets": {}}
    for run in runs:
        out.update({k: v for k, v in run.items() if k == "supernet"})
        for b, sec in run["budgets"].items():
            have = out["budgets"].setdefault(b, {"plans": []})["plans"]
            have += [dict(r) for r in sec["plans"][len(have):]]  # NOTE: an unfinished forward run lists a prefix
            for mine, theirs in zip(have, sec["plans"]):
                if abs(mine["ratio"] - theirs["ratio"]) > 1e-9:
                    raise ValueError(f"merge_tau: plans differ at β={b} (ratio {mine['ratio']} vs {theirs['ratio']})")
                mine.update(theirs)
    for sec in out["budgets"].values():
        sec["plans"] = [r for r in sec["plans"] if "target" in r]
        sec["tau"] = _taus(sec["plans"])
    return out


def markdown(rep: dict) -> str:
    lines = ["# RL allocation with a fixed reward (issue 12)", ""]
    for model, b in rep["cells"]:
        lines += [f"## {model}, β = {b}", "", "| method | family | seeds | MACs | params | acc BN-recal | acc after FT | "
                  "evaluations | search s |", "|---|---|---|---|---|---|---|---|---|"]
        for c in sorted((c for c in rep["aggregate"] if c["model"] == model and c["budget"] == b),
                        key=lambda c: -c["acc_after"]):
            lines.append(f"| {c['method']} | {c['family']} | {len(c['seeds'])} | {c['macs_ratio']:.3f} | "
                         f"{c['params_ratio']:.3f} | {100 * c['acc_recal']:.1f} ± {100 * c['acc_recal_std']:.1f} | "
                         f"**{100 * c['acc_after']:.1f} ± {100 * c['acc_after_std']:.1f}** | {c['evaluations']:.0f} | "
                         f"{c['search_seconds']:.0f} |")
        lines.append("")
    lines += ["## RL vs the best rule (paired over the seeds both have)", "",
              "| model | β | RL method | metric | best rule | rule | RL | paired Δ ± std (points) | seeds |",
              "|---|---|---|---|---|---|---|---|---|"]
    for v in rep["versus"]:
        lines.append(f"| {v['model']} | {v['budget']} | {v['method']} | {v['metric']} | {v['best_rule']} | "
                     f"{100 * v['rule_acc']:.1f} | {100 * v['acc']:.1f} | {100 * v['paired_mean']:+.1f} ± "
                     f"{100 * v['paired_std']:.1f} | {v['seeds']} |")
    lines += ["", "## Reward curves", "", "Flattening as in `search_study.md` (trailing 20-episode mean reaches 95 % of "
              "its rise; 'no rise' when the rise is under 2 s.e.). 'uniform' is the uniform plan's score *under the same "
              "reward*; 'beats uniform' is the share of episodes whose reward exceeds it.", "",
              "| run | reward | episodes | first 20 | last 20 | rise ± s.e. | flat at | best | uniform | beats uniform |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for f in rep["curves"]:
        if "first_window" not in f:
            continue
        flat = "no rise" if not f["rises"] else f["flat_at"]
        u = "—" if f["uniform_score"] is None else f"{f['uniform_score']:.3f}"
        beats = "—" if f["beats_uniform"] is None else f"{100 * f['beats_uniform']:.0f} %"
        lines.append(f"| {f['run']} | {f['reward']} | {f['episodes']} | {f['first_window']:.3f} | {f['last_window']:.3f} "
                     f"| {f['rise']:+.3f} ± {f['rise_noise']:.3f} | {flat} | {f['best_reward']:.3f} | {u} | {beats} |")
    lines += _tau_markdown(rep.get("tau"))
    return "\n".join(lines + ["", *rep["notes"]]) + "\n"


def _tau_markdown(tau: dict | None) -> list[str]:
    if not tau:
        return []
    cfg = tau["config"]
    lines = ["", f"## Proxy vs fine-tuned accuracy: Kendall τ ({tau['model']})", "",
             f"Random plans (`search_proxy.random_plans`), target = test accuracy ({cfg['test']} images) after rewrite, "
             f"BN recalibration and the study's fine-tune ({cfg['ft_epochs']} epoch on {cfg['ft_subset']} images).", "",
             "| β | plans | target range | masked (original weights) | fine-tuned reward | supernet weights |",
             "|---|---|---|---|---|---|"]
    for b, sec in tau["budgets"].items():
        t, accs = sec["tau"], [r["target"] for r in sec["plans"]]
        cell = lambda n: f"{t[n]['tau']:+.3f} (p={t[n]['p_value']:.2f})" if n in t else "—"
        lines.append(f"| {b} | {len(accs)} | {min(accs):.3f}–{max(accs):.3f} | {cell('masked')} | "
                     f"{cell('finetuned_reward')} | {cell('supernet')} |")
    if "supernet" in tau:
        s = tau["supernet"]
        lines += ["", f"Supernet: {s['steps']} steps, sub-networks β ~ U{tuple(s['budget_range'])}, KD loss "
                      f"{s['subnet_loss_first10']:.3f} → {s['subnet_loss_last10']:.3f}, full-network test acc "
                      f"{s['full_test_acc']:.3f} (dense {tau['dense_test_acc']:.3f}), {s['train_seconds']:.0f} s."]
    n = max(len(sec["plans"]) for sec in tau["budgets"].values())
    se = (2 * (2 * n + 5) / (9 * n * (n - 1))) ** 0.5 if n > 1 else float("nan")
    return lines + ["", f"τ over {n} plans has a standard deviation ≈ {se:.2f} under independence."]


def plot(rep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = rep["cells"]
    fig, axes = plt.subplots(1, len(cells), figsize=(5.5 * len(cells), 3.8), squeeze=False)
    for ax, (model, b) in zip(axes[0], cells):
        for f in (f for f in rep["curves"] if f["model"] == model and f["budget"] == b and f["uniform_score"] is not None):
            r = np.array(f["rewards"]) - f["uniform_score"]
            w = min(10, len(r))
            style = "-" if f["reward"] == "fine-tuned" else "--"
            ax.plot(np.arange(w - 1, len(r)), np.convolve(r, np.ones(w) / w, "valid"), style,
                    label=f"{f['reward']} {f['run'].split()[0].split('/')[1]}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(title=f"{model} β={b}", xlabel="episode", ylabel="reward − uniform plan's reward (10-ep mean)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "report":
    # report PART.json... STUDY.json [TAU.json] [NOTES.txt]: writes bench/results/search_rl_reward.{md,json,png}
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from graphprune.files import write_text_atomic

    loaded = {a: json.loads(Path(a).read_text()) for a in sys.argv[2:] if a.endswith(".json")}
    study = next(v for v in loaded.values() if "aggregate" in v)
    tau = merge_tau([v for v in loaded.values() if "budgets" in v and "rows" not in v])
    parts = [v for v in loaded.values() if "rows" in v and "aggregate" not in v]
    notes = [Path(a).read_text().splitlines() for a in sys.argv[2:] if a.endswith(".txt")]
    rep = build(parts, study, tau, notes[0] if notes else [])
    write_text_atomic(RESULTS / "search_rl_reward.json", json.dumps(rep, indent=1, default=float))
    write_text_atomic(RESULTS / "search_rl_reward.md", markdown(rep))
    plot(rep, RESULTS / "search_rl_reward.png")

"""Proxy quality for ``bench/search.py``: does the masked-candidate score rank plans like fine-tuning does?

Over ``n`` random plans at one budget β (per-group keep ratios ~ U(0.1, 1), projected onto β — the way
the evolutionary search draws its random genomes):

* **target**: test accuracy of each plan *rewritten from the original weights*, BN-recalibrated and
  fine-tuned with the bench's short recipe — computed once, shared by both proxies;
* **proxy without the supernet**: the search's score of the masked, BN-recalibrated candidate on the
  original weights (``CandidateEvaluator``);
* **proxy with the supernet**: the same evaluator (same ``eval_fn``, calibration batches) on weights from
  ``graphprune.search.supernet`` (``--supernet-steps`` steps on the fine-tune images, label-free KD from
  the frozen full network, sub-networks sampled with β ~ U(0.3, 0.8) and the search's unit order).

Reported: Kendall τ-b and its two-sided p-value (``scipy.stats.kendalltau``) for each proxy, the
supernet's training time and loss curve, and the supernet's own full-network test accuracy (how much
the shared weights gave up as a full network).

**Retest** (``--only retest``, after a Kendall run): the same plans fine-tuned again with another data
order and tested on another test subset.  τ between the two targets bounds what any proxy can reach
(a noisy target caps τ); both proxies are also ranked against the mean of the two targets.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from graphprune.evaluate import CandidateEvaluator, recalibrate_bn
from graphprune.passes import rewrite
from graphprune.search import SearchContext, SupernetConfig
from graphprune.search.supernet import supernet_graph
from graphprune.train import evaluate, finetune, finetune_config

__all__ = ["random_plans", "kendall", "retest", "kendall_markdown"]


def random_plans(ctx: SearchContext, n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [ctx.project(rng.uniform(0.1, 1.0, len(ctx.n))).keep for _ in range(n)]


def _tau(scores: list[float], accs: list[float]) -> dict[str, float]:
    from scipy.stats import kendalltau

    t = kendalltau(scores, accs)
    return {"tau": float(t.statistic), "p_value": float(t.pvalue)}


def _finetuned(graph, keep, setup: dict) -> float:
    model = rewrite(graph, keep)
    recalibrate_bn(model, setup["calib"])
    finetune(model, setup["ft"], finetune_config(epochs=setup["args"].ft_epochs, lr=0.01, kd_alpha=0.0,
                                                 progress=False))
    return evaluate(model, setup["test"])


def _supernet(graph, ctx: SearchContext, evaluator: CandidateEvaluator, setup: dict,
              log: Callable[[str], None]) -> tuple[CandidateEvaluator, dict[str, Any]]:
    args = setup["args"]
    config = SupernetConfig(steps=args.supernet_steps, batch_size=64, progress=False)
    t = time.perf_counter()
    trained_graph, result = supernet_graph(graph, ctx.scores, setup["ft"].dataset, config, ctx.cfg,
                                           ctx.budget.metric)
    seconds = time.perf_counter() - t
    full_acc = evaluate(trained_graph.traced.gm, setup["test"])
    log(f"supernet: {args.supernet_steps} steps in {seconds:.0f}s, sub-network KD loss "
        f"{result.summary()['subnet_loss_first10']:.3f} -> {result.summary()['subnet_loss_last10']:.3f}, "
        f"full-network test acc {full_acc:.4f}")
    info = {**result.summary(), "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
            "losses": result.losses, "full_losses": result.full_losses, "full_test_acc": full_acc}
    return CandidateEvaluator(trained_graph, evaluator.eval_fn, evaluator.calib, evaluator.config), info


def kendall(graph, evaluator: CandidateEvaluator, ctx: SearchContext, setup: dict, n: int,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """τ between masked score and fine-tuned accuracy over ``n`` random plans at ``ctx.budget``, ± supernet."""
    keeps = random_plans(ctx, n)
    scores, accs, seconds = [], [], []
    for i, keep in enumerate(keeps):
        scores.append(evaluator(keep))
        t = time.perf_counter()
        accs.append(_finetuned(graph, keep, setup))
        seconds.append(time.perf_counter() - t)
        log(f"kendall {i + 1}/{n}: score {scores[-1]:.4f} fine-tuned acc {accs[-1]:.4f}")
    out = {"budget": ctx.budget.ratio, "n": n, **_tau(scores, accs), "scores": scores, "accuracies": accs,
           "ratios": [ctx.ratio_of(k) for k in keeps], "ft_seconds_mean": float(np.mean(seconds))}
    if setup["args"].supernet_steps:
        sn_evaluator, info = _supernet(graph, ctx, evaluator, setup, log)
        t = time.perf_counter()
        sn_scores = [sn_evaluator(k) for k in keeps]
        info["score_seconds"] = time.perf_counter() - t
        out["supernet"] = {**info, **_tau(sn_scores, accs), "scores": sn_scores,
                           "tau_vs_plain_scores": _tau(sn_scores, scores)["tau"]}
        log(f"kendall τ without supernet {out['tau']:.3f} (p={out['p_value']:.3f}), with "
            f"{out['supernet']['tau']:.3f} (p={out['supernet']['p_value']:.3f})")
    return out


def retest(graph, ctx: SearchContext, setup: dict, kendall_section: dict,
           log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune the Kendall plans again (``setup`` holds the other loaders); τ between targets and vs the mean."""
    keeps = random_plans(ctx, kendall_section["n"])
    accs = []
    for i, keep in enumerate(keeps):
        accs.append(_finetuned(graph, keep, setup))
        log(f"retest {i + 1}/{len(keeps)}: fine-tuned acc {accs[-1]:.4f} "
            f"(first run {kendall_section['accuracies'][i]:.4f})")
    mean = list(np.add(accs, kendall_section["accuracies"]) / 2)
    out = {"accuracies": accs, "target_tau": _tau(accs, kendall_section["accuracies"]),
           "vs_mean": {"original weights": _tau(kendall_section["scores"], mean)}}
    if "supernet" in kendall_section:
        out["vs_mean"]["supernet weights"] = _tau(kendall_section["supernet"]["scores"], mean)
    log(f"retest: τ(target, target) {out['target_tau']['tau']:.3f}; vs mean {out['vs_mean']}")
    return out


def _retest_markdown(k: dict) -> list[str]:
    r = k.get("retest")
    if not r:
        return []
    lines = ["", f"Target reliability (retest: the same {k['n']} plans fine-tuned again with another data order, "
                 f"tested on another {k.get('config', {}).get('test', '')}-image subset): τ between the two "
                 f"targets {r['target_tau']['tau']:.3f} (p={r['target_tau']['p_value']:.3f}); against the mean "
                 "of the two targets:", "", "| proxy | Kendall τ vs mean target | p-value |", "|---|---|---|"]
    lines += [f"| {name} | {t['tau']:.3f} | {t['p_value']:.3f} |" for name, t in r["vs_mean"].items()]
    if "wall_seconds" in r:
        lines += ["", f"Retest run: {r['wall_seconds'] / 60:.0f} min."]
    return lines


def kendall_markdown(report: dict) -> list[str]:
    if "kendall" not in report:
        return []
    k = report["kendall"]
    cfg = k.get("config", report["config"])  # the Kendall section may come from its own run
    lines = ["", f"## Proxy quality: Kendall τ over {k['n']} random plans at β={k['budget']}", "",
             "Target: test accuracy after rewriting each plan from the original weights, BN recalibration and "
             f"fine-tuning ({cfg.get('ft_epochs')} epoch on {cfg.get('ft_subset')} images; mean "
             f"{k.get('ft_seconds_mean', float('nan')):.0f}s per plan). Accuracies range "
             f"{min(k['accuracies']):.4f}–{max(k['accuracies']):.4f}.", "",
             "| proxy (masked candidate, BN-recalibrated, −CE on held-out images) | Kendall τ | p-value |",
             "|---|---|---|",
             f"| original weights | {k['tau']:.3f} | {k['p_value']:.3f} |"]
    s = k.get("supernet")
    if s:
        lines.append(f"| supernet weights ({s['steps']} steps) | {s['tau']:.3f} | {s['p_value']:.3f} |")
        c = s["config"]
        lines += ["", f"Supernet: {s['steps']} SGD steps (batch {c['batch_size']}, lr {c['lr']}, cosine) on the "
                      f"{cfg.get('ft_subset')} fine-tune images, label-free KD (T={c['temperature']}) from the frozen "
                      f"full network, {c['samples']} sampled sub-network(s) per step, "
                      f"β ~ U{tuple(c['budget_range'])}, "
                      f"sandwich={c['sandwich']}; {s['seconds']:.0f}s. Sub-network KD loss (mean of first/last 10 "
                      f"steps) {s['subnet_loss_first10']:.3f} → {s['subnet_loss_last10']:.3f}. Full network "
                      f"with supernet weights: test acc {s['full_test_acc']:.4f} (dense original "
                      f"{report['dense_test_acc']:.4f}). τ between the two proxies' scores: "
                      f"{s['tau_vs_plain_scores']:.3f}."]
        n = k["n"]
        se = (2 * (2 * n + 5) / (9 * n * (n - 1))) ** 0.5  # τ's standard deviation under independence
        verdict = "helps" if s["tau"] - k["tau"] > 2 * se else "does not help measurably"
        lines += ["", f"Verdict at this sizing: the supernet {verdict}: Δτ = {s['tau'] - k['tau']:+.3f} (same plans, "
                      f"same target; τ over {n} plans has a standard deviation ≈ {se:.2f} under independence)."]
    return lines + _retest_markdown(k)

"""Merge, summarise and render the search study (``search_study.py`` parts -> ``bench/results/search_study.*``).

* table: accuracy after fine-tune (and after BN recalibration, before it) as mean ± sample std over seeds,
  per (model, β, method), with the search cost (evaluations, seconds: per budget; shared searches — the
  sensitivity profile and the conditional policy — count 1/|β| of their total at each budget);
* per (model, β): the best hand-made/measured rule vs the best learned allocation (and vs the evolutionary
  search), the difference in points and in units of the seed std, and the seed-paired difference;
* RL reward curves: the episode where the trailing running mean first covers 95 % of its rise from the
  first window to the last ("flattening").

    python bench/search_study_report.py part1.json part2.json ...   # writes bench/results/search_study.*
    python bench/search_study_report.py bench/results/search_study.json new_part.json notes.txt   # add rows
    python bench/search_study_report.py bench/results/search_study.json vgg16_parts/*.json notes.txt
        # a merged report given as input is split back into its parts first, so new parts add to its rows
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
#: Settings shared by every cell (the rest of the command line names models, seeds and output paths).
SHOWN = ("budgets", "calib", "eval", "test", "ft_subset", "ft_epochs", "episodes", "population", "generations",
         "levels", "rd_points", "threads")


def merge(parts: list[dict]) -> dict:
    """One report from per-(model, seed) parts; rows of the same (model, seed, method, β) are replaced by later parts."""
    rows: dict[tuple, dict] = {}
    report = {"config": parts[0]["config"] if parts else {}, "dense": {}, "rl_histories": {}, "shared": {},
              "evaluator": {}}
    for p in parts:
        if "aggregate" in p:  # an earlier merged report: its rows and curves, so new parts add to it
            _merge_report(report, p, rows)
            continue
        key = f"{p['model']}/seed{p['seed']}"
        if p.get("dense_test_acc") is not None:  # resumed parts do not measure it again
            report["dense"].setdefault(p["model"], {})[str(p["seed"])] = p["dense_test_acc"]
        report["rl_histories"].setdefault(key, {}).update(p.get("rl_histories", {}))
        # NOTE: a curve run on other images than the study's (the long pilot) brings the uniform score it compares to
        report.setdefault("rl_uniform_scores", {}).setdefault(key, {}).update(p.get("rl_uniform_scores", {}))
        report["shared"].setdefault(key, {}).update(p.get("shared", {}))
        report["evaluator"][key] = p.get("evaluator")
        report.setdefault("model_config", {})[p["model"]] = {k: p["config"][k] for k in SHOWN if k in p["config"]}
        for r in p["rows"]:
            rows[(r["model"], r["seed"], r["method"], r["budget"])] = r
    report["rows"] = list(rows.values())
    return report


def _merge_report(report: dict, merged: dict, rows: dict) -> None:
    """Fold an earlier ``search_study.json`` into ``report`` (later parts replace its rows of the same key)."""
    for model, seeds in merged.get("dense", {}).items():
        report["dense"].setdefault(model, {}).update(seeds)
    for name in ("rl_histories", "rl_uniform_scores", "shared"):
        for key, value in merged.get(name, {}).items():
            report.setdefault(name, {}).setdefault(key, {}).update(value)
    report["evaluator"].update(merged.get("evaluator", {}))
    report.setdefault("base_notes", merged.get("notes", []))
    for r in merged["rows"]:
        rows[(r["model"], r["seed"], r["method"], r["budget"])] = r


def parts_from_report(report: dict) -> list[dict]:
    """Per-(model, seed) parts rebuilt from a merged report, so ``merge`` can add new parts to an old report.

    The old parts' own settings survive only as the report's ``model_config`` (or, for reports written before it,
    the one ``config`` the whole report shows).
    """
    keys = sorted({(r["model"], r["seed"]) for r in report["rows"]})
    parts = []
    for model, seed in keys:
        key = f"{model}/seed{seed}"
        config = {**report["config"], **report.get("model_config", {}).get(model, {})}
        parts.append({"model": model, "seed": seed, "config": config,
                      "dense_test_acc": report["dense"].get(model, {}).get(str(seed)),
                      "rows": [r for r in report["rows"] if (r["model"], r["seed"]) == (model, seed)],
                      "rl_histories": report["rl_histories"].get(key, {}), "shared": report["shared"].get(key, {}),
                      "evaluator": report["evaluator"].get(key),
                      "rl_uniform_scores": report.get("rl_uniform_scores", {}).get(key, {})})
    return parts


def _ms(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean ± std over seeds per (model, budget, method)."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        cells.setdefault((r["model"], r["budget"], r["method"]), []).append(r)
    out = []
    for (model, budget, method), rs in sorted(cells.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        acc, acc_std = _ms([r["acc_after"] for r in rs])
        recal, recal_std = _ms([r["acc_recal"] for r in rs])
        out.append({"model": model, "budget": budget, "method": method, "family": rs[0]["family"],
                    "seeds": [r["seed"] for r in rs], "acc_after": acc, "acc_after_std": acc_std,
                    "acc_after_by_seed": [r["acc_after"] for r in rs], "acc_recal": recal, "acc_recal_std": recal_std,
                    "acc_recal_by_seed": [r["acc_recal"] for r in rs],
                    "macs_ratio": float(np.mean([r["macs_ratio"] for r in rs])),
                    "params_ratio": float(np.mean([r["params_ratio"] for r in rs])),
                    "evaluations": float(np.mean([r["evaluations"] for r in rs])),
                    "search_seconds": float(np.mean([r["search_seconds"] for r in rs]))})
    return out


def compare(agg: list[dict], a_family: str, b_family: str, metric: str = "acc_after") -> list[dict]:
    """Per (model, β): best (by mean ``metric``) of family b minus best of family a, in points and seed-std units."""
    out = []
    for model, budget in sorted({(c["model"], c["budget"]) for c in agg}):
        cs = [c for c in agg if c["model"] == model and c["budget"] == budget]
        a = [c for c in cs if c["family"] == a_family]
        b = [c for c in cs if c["family"] == b_family]
        if not a or not b:
            continue
        best_a, best_b = max(a, key=lambda c: c[metric]), max(b, key=lambda c: c[metric])
        pooled = float(np.sqrt((best_a[f"{metric}_std"] ** 2 + best_b[f"{metric}_std"] ** 2) / 2))
        by_a = dict(zip(best_a["seeds"], best_a[f"{metric}_by_seed"]))
        paired = [v - by_a[s] for s, v in zip(best_b["seeds"], best_b[f"{metric}_by_seed"]) if s in by_a]
        diff = best_b[metric] - best_a[metric]
        p_mean, p_std = _ms(paired) if paired else (float("nan"), float("nan"))
        out.append({"model": model, "budget": budget, "a": best_a["method"], "b": best_b["method"],
                    "metric": metric, "a_acc": best_a[metric], "b_acc": best_b[metric], "diff": diff, "pooled_std": pooled,
                    "diff_in_std": diff / pooled if pooled > 0 else float("nan"), "paired_mean": p_mean,
                    "paired_std": p_std, "paired_t": p_mean / (p_std / np.sqrt(len(paired)))
                    if len(paired) > 1 and p_std > 0 else float("nan"), "n_seeds": len(paired)})
    return out


def flattening(rewards, window: int = 20, fraction: float = 0.95) -> dict:
    """Episode at which the trailing ``window``-episode mean first covers ``fraction`` of its rise."""
    r = np.asarray(rewards, dtype=float)
    if len(r) < 2 * window:
        return {"episodes": len(r), "flat_at": None}
    run = np.convolve(r, np.ones(window) / window, "valid")  # run[i] = mean of episodes i .. i+window-1
    start, final = run[0], run[-1]
    target = start + fraction * (final - start)
    hit = np.nonzero(run >= target)[0] if final >= start else np.nonzero(run <= target)[0]
    # NOTE: a curve that never rises is "flat" from the start; say so rather than report an early flattening
    noise = float(np.sqrt((r[:window].var(ddof=1) + r[-window:].var(ddof=1)) / window))
    rises = bool(final - start > 2 * noise)
    return {"episodes": len(r), "first_window": float(start), "last_window": float(final), "rise": float(final - start),
            "rise_noise": noise, "rises": rises, "flat_at": int(hit[0] + window) if len(hit) and rises else None,
            "window": window, "fraction": fraction}


def rl_flattening(report: dict) -> list[dict]:
    """Flattening per RL run, with its best reward and (per-budget runs) the uniform plan's score at that β."""
    uniform = {(r["model"], r["seed"], r["budget"]): r.get("search_score") for r in report["rows"]
               if r["method"] == "uniform"}
    out = []
    for key, hists in sorted(report["rl_histories"].items()):
        model, seed = key.split("/seed")
        for name, rewards in sorted(hists.items()):
            if name.endswith("_budgets"):
                continue
            match = re.search(r"per-budget-([0-9.]+)", name)
            budget = float(match.group(1)) if match else None
            own = report.get("rl_uniform_scores", {}).get(key, {})
            out.append({"run": f"{key} {name}", **flattening(rewards), "best_reward": float(np.max(rewards)),
                        "uniform_score": own[name] if name in own else uniform.get((model, int(seed), budget))})
    return out


# ------------------------------------------------------------------------------------------- outputs
def markdown(report: dict) -> str:
    agg, cfg = report["aggregate"], report["config"]
    lines = ["# Search study — allocation methods at tight budgets (Fashion-MNIST)", "",
             f"Models {sorted({r['model'] for r in report['rows']})}, seeds {sorted({r['seed'] for r in report['rows']})}; "
             f"config `{json.dumps({k: cfg[k] for k in sorted(cfg) if k in SHOWN})}`", "",
             "Accuracy on the same stratified test subset for every method and seed; mean ± sample std over "
             "seeds (a seed changes the calibration / search / fine-tune split of the train images, the fine-tune "
             "order and the search's random state). Cost per budget; shared searches count 1/|β| of their total.", ""]
    for model in sorted({c["model"] for c in agg}):
        dense = report["dense"].get(model, {})
        dense_text = f"Dense test acc {np.mean(list(dense.values())):.4f} (same subset)." if dense else ""
        own = report.get("model_config", {}).get(model, {})
        header = {k: cfg[k] for k in SHOWN if k in cfg}
        settings = ([f"Settings for this model (differ from the header): `{json.dumps(own, sort_keys=True)}`", ""]
                    if own and own != header else [])
        lines += [f"## {model}", "", dense_text, "", *settings,
                  "| β | method | family | MACs | params | acc BN-recal | acc after FT | evaluations | search s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in sorted((c for c in agg if c["model"] == model), key=lambda c: (c["budget"], -c["acc_after"])):
            lines.append(f"| {c['budget']:.2f} | {c['method']} | {c['family']} | {c['macs_ratio']:.3f} | "
                         f"{c['params_ratio']:.3f} | {100 * c['acc_recal']:.1f} ± {100 * c['acc_recal_std']:.1f} | "
                         f"**{100 * c['acc_after']:.1f} ± {100 * c['acc_after_std']:.1f}** | "
                         f"{c['evaluations']:.0f} | {c['search_seconds']:.0f} |")
        lines.append("")
    for title, key in (("Best rule vs best learned (RL), after fine-tune", "rule_vs_learned"),
                       ("Best rule vs evolutionary search, after fine-tune", "rule_vs_search"),
                       ("Best rule vs best learned (RL), BN-recalibrated before fine-tune", "rule_vs_learned_recal"),
                       ("Best rule vs evolutionary search, BN-recalibrated before fine-tune", "rule_vs_search_recal")):
        lines += [f"## {title}", "", "Δ = learned/searched − rule (points); "
                  "pooled seed std = √((s₁² + s₂²)/2); paired: per-seed differences (same split, same test images).",
                  "", "| model | β | best rule | best other | Δ points | pooled std | Δ / std | paired Δ ± std | paired t |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in report[key]:
            lines.append(f"| {c['model']} | {c['budget']:.2f} | {c['a']} {100 * c['a_acc']:.1f} | {c['b']} "
                         f"{100 * c['b_acc']:.1f} | {100 * c['diff']:+.1f} | {100 * c['pooled_std']:.1f} | "
                         f"{c['diff_in_std']:+.1f} | {100 * c['paired_mean']:+.1f} ± {100 * c['paired_std']:.1f} | "
                         f"{c['paired_t']:+.1f} |")
        lines.append("")
    lines += ["## RL reward curves", "", "Flattening: first episode at which the trailing 20-episode mean reward "
              "covers 95 % of its rise from the first 20 episodes to the last 20.", "",
              "A rise smaller than twice its standard error (from the two windows' spread) is reported as "
              "'no rise': the curve was flat from the start; a flattening point in the last half-window is 'still rising' (more "
              "episodes could still pay).", "",
              "Reward = the search score of the sampled plan (−CE of the masked, BN-recalibrated candidate on the "
              "held-out images); 'uniform' = the score of the uniform plan at the same β on the same images.", "",
              "| run | episodes | mean reward, first 20 | last 20 | rise ± s.e. | flat at episode | best reward | "
              "uniform |", "|---|---|---|---|---|---|---|---|"]
    for f in report["rl_flattening"]:
        if "first_window" not in f:
            continue
        flat = "no rise" if not f["rises"] else (
            f"{f['flat_at']} (still rising)" if f["flat_at"] > f["episodes"] - f["window"] // 2 else f["flat_at"])
        lines.append(f"| {f['run']} | {f['episodes']} | {f['first_window']:.3f} | {f['last_window']:.3f} | "
                     f"{f['rise']:+.3f} ± {f['rise_noise']:.3f} | {flat} | {f['best_reward']:.3f} | "
                     f"{'—' if f['uniform_score'] is None else format(f['uniform_score'], '.3f')} |")
    lines += ["", *report.get("notes", [])]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = report["aggregate"]
    models = sorted({c["model"] for c in agg})
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4), squeeze=False)
    methods = sorted({c["method"] for c in agg})
    for ax, model in zip(axes[0], models):
        for i, method in enumerate(methods):
            cs = sorted((c for c in agg if c["model"] == model and c["method"] == method), key=lambda c: c["budget"])
            if not cs:
                continue
            x = np.array([c["budget"] for c in cs]) * (1 + 0.012 * (i - len(methods) / 2))  # NOTE: dodge bars
            ax.errorbar(x, [c["acc_after"] for c in cs], yerr=[c["acc_after_std"] for c in cs], marker="o",
                        capsize=3, ls="--" if cs[0]["family"] == "rule" else "-", color=f"C{i}", label=method)
        if report["dense"].get(model):
            ax.axhline(np.mean(list(report["dense"][model].values())), color="grey", ls=":", label="dense")
        ax.set(xlabel="β (fraction of dense MACs kept)", ylabel="test accuracy after fine-tune", title=model)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build(parts: list[dict], notes: list[str] | None = None) -> dict:
    report = merge(parts)
    report["aggregate"] = aggregate(report["rows"])
    report["rule_vs_learned"] = compare(report["aggregate"], "rule", "learned")
    report["rule_vs_search"] = compare(report["aggregate"], "rule", "search")
    report["rule_vs_learned_recal"] = compare(report["aggregate"], "rule", "learned", "acc_recal")
    report["rule_vs_search_recal"] = compare(report["aggregate"], "rule", "search", "acc_recal")
    report["rl_flattening"] = rl_flattening(report)
    report["notes"] = notes if notes else report.pop("base_notes", [])  # NOTE: re-merging keeps the write-up
    report.pop("base_notes", None)
    return report


def write(report: dict, prefix: str = "search_study", results: Path = RESULTS) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{prefix}.json").write_text(json.dumps(report, indent=1, default=float))
    (results / f"{prefix}.md").write_text(markdown(report))
    if report["aggregate"]:
        plot(report, results / f"{prefix}.png")


if __name__ == "__main__":
    notes_file = [a for a in sys.argv[1:] if a.endswith(".txt")]
    parts, notes = [], []
    for arg in (a for a in sys.argv[1:] if a.endswith(".json")):
        loaded = json.loads(Path(arg).read_text())
        if "aggregate" in loaded:  # a merged report: its rows come first, later parts replace or add to them
            parts += parts_from_report(loaded)
            notes = loaded.get("notes", [])
        else:
            parts.append(loaded)
    notes = Path(notes_file[0]).read_text().splitlines() if notes_file else notes
    write(build(parts, notes))

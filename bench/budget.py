"""Budget precision: requested vs achieved MACs ratio of graphprune.

For ResNet-50, MobileNetV2 and DenseNet-121 (torchvision, ``weights=None``, 1×3×224×224) and the bundled
CIFAR ResNet-56 (``models.build("resnet56")``, 1×3×32×32), at budgets 0.3 / 0.5 / 0.7 of dense MACs and
both allocation strategies (``global``, ``uniform``; importance ``l2``):

* ``achieved``  — graphprune's cost model on the plan (``report.macs_ratio``);
* ``counted``   — ``FlopCounterMode`` MACs of the pruned module / of the dense model (independent);
* ``gap``       — ``budget - achieved`` in percentage points.  A run is *within budget* when
  ``achieved ≤ budget`` and ``gap ≤ 2`` points, and its *count matches* when the two counts agree.

Writes ``bench/results/budget.json``, ``budget.md`` (table) and ``budget.png`` (achieved vs requested).

    python bench/budget.py
    python bench/budget.py --models resnet56 --budgets 0.5
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, build_model, environment, error_text, example_input, fmt, \
    graphprune_error_kind, graphprune_seconds, markdown_table, write_json  # noqa: E402

BUDGETS = (0.3, 0.5, 0.7)
STRATEGIES = ("global", "uniform")
MODELS = ("resnet50", "mobilenet_v2", "densenet121", "resnet56")
TOLERANCE = 0.02  # achieved must be in [budget - 2 points, budget]
MACS_RTOL = 1e-6


@dataclass
class BudgetRow:
    """One (model, strategy, budget) prune."""

    model: str
    strategy: str
    budget: float
    achieved: float | None = None  # graphprune cost model
    counted: float | None = None  # FlopCounterMode pruned / dense
    params_ratio: float | None = None
    seconds: float | None = None
    error: str = ""

    @property
    def gap_points(self) -> float | None:
        return None if self.achieved is None else 100 * (self.budget - self.achieved)

    @property
    def within_budget(self) -> bool:
        return self.achieved is not None and self.achieved <= self.budget + 1e-9 \
            and self.budget - self.achieved <= TOLERANCE

    @property
    def count_matches(self) -> bool:
        return self.achieved is not None and self.counted is not None \
            and abs(self.achieved - self.counted) <= MACS_RTOL * max(self.counted, 1e-12)


def load_model(name: str) -> tuple[torch.nn.Module, torch.Tensor] | None:
    """(model, example input), or None when the bundled CIFAR models are not importable."""
    if name == "resnet56":
        sys.path.insert(0, str(REPO))
        try:
            import models
        except ImportError:
            return None
        torch.manual_seed(0)
        return models.build("resnet56").eval(), example_input((1, 3, 32, 32))
    return build_model(name), example_input((1, 3, 224, 224))


def measure(name: str, model: torch.nn.Module, x: torch.Tensor, strategy: str, budget: float,
            dense: float) -> BudgetRow:
    """Prune once and count the result both ways."""
    import graphprune
    from graphprune.testing import counted_macs

    row = BudgetRow(name, strategy, budget)
    try:
        res = graphprune.prune(model, budget, example_inputs=x, strategy=strategy, importance="l2",
                               return_result=True)
    except Exception as exc:
        row.error = f"{graphprune_error_kind(exc)}: {error_text(exc)}"
        return row
    row.achieved, row.params_ratio = res.report.macs_ratio, res.report.params_ratio
    row.seconds = graphprune_seconds(res.report)
    row.counted = counted_macs(res.model.eval(), (x,)) / dense
    return row


def run(model_names, budgets, strategies) -> tuple[list[BudgetRow], list[str]]:
    from tqdm import tqdm

    from graphprune.testing import counted_macs, randomize_

    rows, notes = [], []
    bar = tqdm(total=len(model_names) * len(budgets) * len(strategies), unit="prune", dynamic_ncols=True)
    for name in model_names:
        loaded = load_model(name)
        if loaded is None:
            notes.append(f"{name} skipped: the bundled `models` package is not importable")
            bar.update(len(budgets) * len(strategies))
            continue
        model, x = loaded
        randomize_(model)
        dense = counted_macs(model, (x,))
        for strategy in strategies:
            for budget in budgets:
                bar.set_postfix_str(f"{name} {strategy} {budget}", refresh=False)
                rows.append(measure(name, model, x, strategy, budget, dense))
                bar.update()
    bar.close()
    return rows, notes


# ------------------------------------------------------------------------------------------- output

def _cells(r: BudgetRow) -> list[str]:
    return [r.model, r.strategy, fmt(r.budget, ".2f"), fmt(r.achieved, ".4f"), fmt(r.counted, ".4f"),
            fmt(r.gap_points, ".2f"), fmt(r.within_budget), fmt(r.count_matches), fmt(r.params_ratio, ".3f"),
            fmt(r.seconds, ".1f"), r.error or ""]


def render(rows: list[BudgetRow], notes: list[str], env: dict) -> str:
    ok = sum(r.within_budget for r in rows)
    match = sum(r.count_matches for r in rows)
    gaps = [r.gap_points for r in rows if r.gap_points is not None]
    headers = ["model", "strategy", "budget", "achieved", "counted (FC)", "gap (pts)", "within", "count match",
               "params ratio", "s", "error"]
    lines = ["# Budget precision (graphprune, MACs kept)", "",
             f"*achieved* = graphprune's cost model, *counted* = FlopCounterMode on the pruned module, "
             f"*gap* = budget − achieved in points; *within* = achieved ≤ budget and gap ≤ {100 * TOLERANCE:g} "
             "points. Importance `l2`.", "",
             "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), "",
             f"**{ok}/{len(rows)}** runs within budget; **{match}/{len(rows)}** counts match FlopCounterMode; "
             f"largest gap {max(gaps, default=float('nan')):.2f} points, mean {sum(gaps) / max(len(gaps), 1):.2f}.",
             ""] + [f"- NOTE: {n}" for n in notes] + ["", markdown_table(headers, [_cells(r) for r in rows]), "",
                                                      "![achieved vs requested](budget.png)"]
    return "\n".join(lines) + "\n"


def plot(rows: list[BudgetRow], path: Path) -> None:
    """Left: achieved vs requested MACs ratio; right: the gap in points against the allowed band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, gx) = plt.subplots(1, 2, figsize=(11, 4.5))
    lo, hi = min(BUDGETS) - 0.05, max(BUDGETS) + 0.05
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="achieved = budget")
    ax.fill_between([lo, hi], [lo - TOLERANCE, hi - TOLERANCE], [lo, hi], color="g", alpha=0.15)
    gx.axhspan(0, 100 * TOLERANCE, color="g", alpha=0.15, label=f"allowed: 0 to {100 * TOLERANCE:g} pts")
    markers = dict(zip(MODELS, "osD^"))
    keys = sorted({(r.model, r.strategy) for r in rows})
    for k, (model, strategy) in enumerate(keys):
        sel = [r for r in rows if (r.model, r.strategy) == (model, strategy) and r.achieved is not None]
        style = dict(marker=markers.get(model, "x"), ls="--" if strategy == "uniform" else "-", alpha=0.8,
                     label=f"{model} {strategy}")
        ax.plot([r.budget for r in sel], [r.achieved for r in sel], **style)
        offset = (k - len(keys) / 2) * 0.004  # spread the markers so overlapping runs stay visible
        gx.plot([r.budget + offset for r in sel], [r.gap_points for r in sel], **style)
    ax.set(xlabel="requested MACs ratio (budget)", ylabel="achieved MACs ratio", xlim=(lo, hi), ylim=(lo, hi),
           title="achieved vs requested")
    gx.set(xlabel="requested MACs ratio (budget)", ylabel="budget − achieved (points)",
           title="gap (must lie in the green band)", ylim=(-0.25, 100 * TOLERANCE + 0.25))
    gx.legend(fontsize=7, ncol=2)
    fig.suptitle("graphprune budget precision")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--budgets", nargs="+", type=float, default=list(BUDGETS))
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    args = p.parse_args(argv)
    rows, notes = run(args.models, args.budgets, args.strategies)
    env = environment()
    payload = {"tolerance": TOLERANCE, "environment": env, "notes": notes,
               "rows": [asdict(r) | {"gap_points": r.gap_points, "within_budget": r.within_budget,
                                     "count_matches": r.count_matches} for r in rows]}
    write_json(RESULTS / "budget.json", payload)
    (RESULTS / "budget.md").write_text(render(rows, notes, env))
    plot(rows, RESULTS / "budget.png")
    print(markdown_table(["model", "strategy", "budget", "achieved", "counted", "gap", "within"],
                         [_cells(r)[:7] for r in rows]))


if __name__ == "__main__":
    main()

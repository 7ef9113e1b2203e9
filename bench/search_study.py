"""Multi-seed, multi-model search study for ``bench/search.py --models ... --seeds ...`` (issue 12).

For each (model, seed) this runs every method at every budget β (fraction of dense MACs kept), rewrites
the plan, recalibrates BatchNorm, fine-tunes with one recipe shared by all methods and tests it:

=====================  =====================================================================================
``uniform``, ``global``  ``allocate`` with L2 importance (no evaluation)                        hand-made rule
``tp-global-l2``         Torch-Pruning global magnitude (``search.tp_global``)                  hand-made rule
``sensitivity``          one profile (groups × levels evaluations, shared by all budgets)      measured rule
``rate-distortion``      equal-slope allocation on measured per-group distortion curves (shared)  measured rule
``evolutionary``         genetic search, per budget (``--population`` × ``--generations``)     search
``rl-per-budget``        one CACP policy per budget, ``--episodes`` each                        learned
``rl-conditional``       one CACP policy on β ~ U(min β, max β), ``--episodes`` once, then plan(β)  learned
``rl-warm-ft``           per-budget policy with the reward options (``search_rl_reward.py``):     learned
                         started at the best rule, reward after ``--rl-reward-steps`` SGD steps
=====================  =====================================================================================

What a seed changes: the split of the train subset into calibration / held-out search / fine-tune
images, the fine-tune order, and the searches' random state.  The test subset (``--test`` images,
stratified) is the same for every seed and method, so method differences are paired.

Widths are exact (``AllocationConfig(round_to=1)``) for every graphprune method: with the default
``"auto"`` menus ResNet-56 cannot go below 0.21 of its MACs.

Each (model, seed) writes its rows to a part JSON as it goes (``--part``); ``search_study_report.py``
merges parts into ``bench/results/search_study.{json,md,png}``.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import graphprune
from graphprune import Budget
from graphprune.data import ImageOptions, load_split
from graphprune.evaluate import CandidateEvaluator, EvalConfig, classification_eval_fn, recalibrate_bn
from graphprune.importance import score_units
from graphprune.passes import rewrite
from graphprune.search import SearchContext, allocate
from graphprune.search.allocate import AllocationConfig
from graphprune.search.conditional import ConditionalSearch, RLConfig
from graphprune.search.evolution import EvolutionConfig, evolutionary_search
from graphprune.search.sensitivity import SensitivityConfig, sensitivity_profile, sensitivity_search
from graphprune.train import evaluate, finetune, finetune_config, load_checkpoint, make_loader

EXAMPLE = torch.zeros(1, 1, 28, 28)
ALLOC = AllocationConfig(round_to=1)
METHODS = ("uniform", "global", "tp-global-l2", "sensitivity", "rate-distortion", "evolutionary",
           "rl-per-budget", "rl-conditional", "rl-warm-ft")
#: Which family each method belongs to (the summary compares the best of each).
FAMILY = {"uniform": "rule", "global": "rule", "tp-global-l2": "rule", "sensitivity": "rule",
          "rate-distortion": "rule", "evolutionary": "search", "rl-per-budget": "learned",
          "rl-conditional": "learned", "rl-warm-ft": "learned"}


def rate_distortion_available() -> bool:
    from graphprune.search.registry import SEARCHES

    return "rate_distortion" in SEARCHES


def study_data(args, seed: int):
    """calib, held-out, fine-tune loader (seeded split and order) and the fixed test loader."""
    opts = ImageOptions(in_channels=1)
    n_search = args.calib + args.eval
    train = load_split("fashion_mnist", "train", subset=n_search + args.ft_subset, stratified=True, seed=1,
                       options=opts)
    x, y = train.tensors
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    split = lambda a, b: [(x[i:min(i + 64, b)], y[i:min(i + 64, b)]) for i in range(a, b, 64)]
    ft = torch.utils.data.TensorDataset(x[n_search:], y[n_search:])
    test = load_split("fashion_mnist", "test", subset=args.test, stratified=True, seed=0, options=opts)
    return (split(0, args.calib), split(args.calib, n_search), make_loader(ft, 64, seed=seed),
            make_loader(test, 250, shuffle=False))


class Cell:
    """One (model, seed): graph, evaluator, data; ``row`` turns a keep mask or a model into a result row."""

    def __init__(self, model_name: str, seed: int, args, log, done: set | None = None):
        self.model_name, self.seed, self.args, self.log = model_name, seed, args, log
        self.done = done or set()  # (method, β) rows an earlier run already wrote (resume)
        torch.manual_seed(seed)
        self.model = load_checkpoint(Path(args.checkpoints) / f"{model_name}.pt").build().eval()
        self.calib, self.held, self.ft, self.test = study_data(args, seed)
        self.graph = graphprune.inspect(self.model, EXAMPLE)
        self.dense = self.graph.cost()
        self.scores = score_units(self.graph, "l2")
        self.evaluator = CandidateEvaluator(self.graph, classification_eval_fn(self.held, "neg_loss"), self.calib,
                                            EvalConfig(calib_batches=len(self.calib)))
        lowest = Budget.macs(min(args.budgets))
        self.ctx = {b: SearchContext(self.graph, self.scores, Budget.macs(b), ALLOC, self.evaluator, seed, False,
                                     lowest_budget=lowest) for b in args.budgets}

    def todo(self, method: str) -> list[float]:
        return [b for b in self.args.budgets if (method, b) not in self.done]

    def row(self, method: str, budget: float, pruned: torch.nn.Module, evaluations: int, seconds: float,
            keep=None, **extra) -> dict:
        cost = graphprune.count_cost(pruned, EXAMPLE)
        row = {"model": self.model_name, "seed": self.seed, "method": method, "family": FAMILY[method],
               "budget": budget, "macs_ratio": cost.macs / self.dense.macs,
               "params_ratio": cost.params / self.dense.params, "evaluations": int(evaluations),
               "search_seconds": float(seconds), **extra}
        # NOTE: which layers a method thins is the question on VGG-16 (late layers redundant), so every row keeps them
        row["widths"] = [m.out_channels if isinstance(m, torch.nn.Conv2d) else m.out_features for m in pruned.modules()
                         if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        if keep is not None:
            calls = self.evaluator.calls
            row["search_score"] = float(self.evaluator(keep))
            self.evaluator.calls = calls  # NOTE: scoring the final plan for the table is not search cost
        recalibrate_bn(pruned, self.calib)
        row["acc_recal"] = evaluate(pruned, self.test)
        t = time.perf_counter()
        finetune(pruned, self.ft, finetune_config(epochs=self.args.ft_epochs, lr=0.01, kd_alpha=0.0, progress=False,
                                                  seed=self.seed))
        row["ft_seconds"] = time.perf_counter() - t
        row["acc_after"] = evaluate(pruned, self.test)
        self.log(f"{self.model_name} s{self.seed} {method:15s} β={budget:.2f} MACs {row['macs_ratio']:.3f} "
                 f"acc {row['acc_recal']:.3f} -> {row['acc_after']:.3f} ({evaluations} evals, {seconds:.1f}s)")
        return row

    def keep_row(self, method, budget, keep, evaluations, seconds, **extra) -> dict:
        return self.row(method, budget, rewrite(self.graph, keep), evaluations, seconds, keep=keep, **extra)


def _timed(evaluator: CandidateEvaluator):
    """Start a search's cost clock; the score cache is emptied so no search reuses another's evaluations."""
    evaluator._cache.clear()  # NOTE: rows score their final plan through the same evaluator (and cache)
    calls, start = evaluator.calls, time.perf_counter()
    return lambda: (evaluator.calls - calls, time.perf_counter() - start)


def run_cell(model_name: str, seed: int, args, log, part: Path | None, done: set | None = None) -> dict:
    """Every requested method at every budget for one (model, seed); the part dict is saved after each row.

    Order: the cheap rules first, then the learned methods (the point of the study), then the other searches,
    so a run cut short still has the comparison that matters.
    """
    cell = Cell(model_name, seed, args, log, done)
    out = {"model": model_name, "seed": seed, "config": {k: v for k, v in vars(args).items()},
           "dense_test_acc": None if done else evaluate(cell.model, cell.test), "rows": [], "rl_histories": {},
           "shared": {}}
    save = (lambda: part.write_text(json.dumps(out, indent=1, default=float))) if part else (lambda: None)
    runners = {"uniform": _rule, "global": _rule, "rate-distortion": _rate_distortion, "rl-conditional": _rl_conditional,
               "rl-per-budget": _rl_per_budget, "sensitivity": _sensitivity, "evolutionary": _evolutionary,
               "tp-global-l2": _tp_global, "rl-warm-ft": _rl_warm_ft}
    for method in ORDER:
        if method == "rate-distortion" and method in args.methods and not rate_distortion_available():
            log("rate-distortion: no 'rate_distortion' allocation strategy in this graphprune; row skipped")
        elif method in args.methods and cell.todo(method):
            runners[method](cell, method, out, save)
    out["evaluator"] = {"calls": cell.evaluator.calls, "seconds": cell.evaluator.seconds}
    save()
    return out


ORDER = ("uniform", "global", "rate-distortion", "rl-conditional", "rl-per-budget", "rl-warm-ft", "sensitivity",
         "evolutionary", "tp-global-l2")


def _rule(cell: Cell, method: str, out: dict, save) -> None:
    for b in cell.todo(method):
        t = time.perf_counter()
        alloc = allocate(cell.graph, cell.scores, Budget.macs(b), method, ALLOC)
        out["rows"].append(cell.keep_row(method, b, alloc.keep, 0, time.perf_counter() - t))
        save()


def _rate_distortion(cell: Cell, method: str, out: dict, save) -> None:
    """Equal-slope allocation on measured per-group distortion curves (``--rd-points`` widths per group).

    Units within a group are ordered by the same L2 importance as the other rules (``unit_order="scores"``):
    measuring every unit's own distortion costs one evaluation per unit (≈1000 on ResNet-56, several thousand
    on MobileNetV2), beyond this study's CPU.  The curves do not depend on β (every context shares the width
    menus of the lowest β), so they are measured once and reused: the cost is shared like the sensitivity profile.
    """
    from graphprune.search import rate_distortion as rd

    memo: dict[bytes, float] = {}
    measured = {"calls": 0}

    class SharedDistortion(rd._Distortion):  # NOTE: bench-side memo; the library measures per call
        def __call__(self, keep):
            key = np.packbits(keep).tobytes()
            if key not in memo:
                measured["calls"] += 1
                memo[key] = super().__call__(keep)
            return memo[key]

    original, rd._Distortion = rd._Distortion, SharedDistortion
    try:
        budgets = cell.args.budgets
        results, start = {}, time.perf_counter()
        for b in budgets:
            results[b] = rd.rate_distortion_search(cell.ctx[b], rd.RateDistortionConfig(cell.args.rd_points, "scores"))
        secs = time.perf_counter() - start
    finally:
        rd._Distortion = original
    out["shared"][method] = {"evaluations": measured["calls"], "seconds": secs}
    for b in cell.todo(method):
        out["rows"].append(cell.keep_row(method, b, results[b].keep, measured["calls"] / len(budgets),
                                         secs / len(budgets), shared=True, rd_lambda=results[b].info["lambda"]))
        save()


def _tp_global(cell: Cell, method: str, out: dict, save) -> None:
    from search import tp_global

    for b in cell.todo(method):
        t = time.perf_counter()
        pruned = tp_global(cell.model, b)
        out["rows"].append(cell.row(method, b, pruned, 0, time.perf_counter() - t))
        save()


def _sensitivity(cell: Cell, method: str, out: dict, save) -> None:
    budgets = cell.args.budgets
    levels = SensitivityConfig(tuple(cell.args.levels))
    done = _timed(cell.evaluator)
    drops = sensitivity_profile(cell.ctx[budgets[0]], levels)
    evals, secs = done()
    out["shared"]["sensitivity"] = {"evaluations": evals, "seconds": secs}
    for b in cell.todo(method):
        r = sensitivity_search(cell.ctx[b], levels, drops)
        out["rows"].append(cell.keep_row(method, b, r.keep, evals / len(budgets), r.seconds + secs / len(budgets),
                                         shared=True))
        save()


def _evolutionary(cell: Cell, method: str, out: dict, save) -> None:
    for b in cell.todo(method):
        _timed(cell.evaluator)
        r = evolutionary_search(cell.ctx[b], EvolutionConfig(population=cell.args.population,
                                                             generations=cell.args.generations))
        out["rows"].append(cell.keep_row(method, b, r.keep, r.evaluations, r.seconds))
        save()


def _rl_config(cell: Cell) -> RLConfig:
    # NOTE: init="none": the cold-start policy the study's rows were measured with (rl-warm-ft is the warm one)
    return RLConfig(budget_range=(min(cell.args.budgets), max(cell.args.budgets)), batch_episodes=4, seed=cell.seed,
                    init="none")


def _rl_per_budget(cell: Cell, method: str, out: dict, save) -> None:
    for b in cell.todo(method):
        done = _timed(cell.evaluator)
        per = ConditionalSearch.from_context(cell.ctx[b], replace(_rl_config(cell), budget_range=(b, b)))
        per.fit(cell.args.episodes, progress=False)
        r = per.search_result(b)
        evals, secs = done()
        out["rl_histories"][f"per-budget-{b}"] = [h["reward"] for h in per.history]
        out["rows"].append(cell.keep_row(method, b, r.keep, evals, secs, projection=r.info["projection"]))
        save()


def _rl_conditional(cell: Cell, method: str, out: dict, save) -> None:
    budgets = cell.args.budgets
    done = _timed(cell.evaluator)
    cond = ConditionalSearch.from_context(cell.ctx[min(budgets)], _rl_config(cell))
    cond.fit(cell.args.episodes, progress=False)
    evals, secs = done()
    out["shared"]["rl-conditional"] = {"evaluations": evals, "seconds": secs}
    out["rl_histories"]["conditional"] = [h["reward"] for h in cond.history]
    out["rl_histories"]["conditional_budgets"] = [h["budget"] for h in cond.history]
    for b in cell.todo(method):
        r = cond.search_result(b)
        out["rows"].append(cell.keep_row(method, b, r.keep, evals / len(budgets), secs / len(budgets) + r.seconds,
                                         shared=True, projection=r.info["projection"]))
        save()


def _rl_warm_ft(cell: Cell, method: str, out: dict, save) -> None:
    """Per-budget RL with the reward options of ``search_rl_reward.py`` (its own evaluator: costs counted there)."""
    from search_rl_reward import run_rl_options

    run_rl_options(cell, method, out, save)


def run_study(args, log, results_dir: Path) -> dict:
    """Study mode: every (model, seed) cell, then the merged report of every part in the part folder.

    The report goes to ``results_dir/<--out>.*``, or to ``<part folder>/report/`` without ``--out``: a partial
    study must not replace committed results.
    """
    import tempfile

    import search_study_report

    torch.set_num_threads(args.threads)
    out = Path(args.out or "search_study")
    parts = Path(args.part_dir) if args.part_dir else Path(tempfile.gettempdir()) / f"graphprune_{out.name}_parts"
    results = (out.parent if out.parent != Path(".") else results_dir) if args.out else parts / "report"
    parts.mkdir(parents=True, exist_ok=True)
    for model_name in args.models or [args.model]:
        for seed in args.seeds:
            tag = "all" if set(args.methods) == set(METHODS) else "+".join(args.methods)
            done = {(r["method"], r["budget"]) for p in parts.glob(f"{model_name}_seed{seed}_*.json")
                    for r in json.loads(p.read_text())["rows"]} if args.resume else set()
            stamp = time.strftime("_%H%M%S") if args.resume else ""  # NOTE: never overwrite the parts resumed from
            run_cell(model_name, seed, args, log, parts / f"{model_name}_seed{seed}_{tag}{stamp}.json", done)
    report = search_study_report.build([json.loads(p.read_text()) for p in sorted(parts.glob("*.json"))])
    search_study_report.write(report, out.name, results)
    return report

"""The public entry points.  ``prune`` reads top to bottom as the compiler's stages:

trace -> dependency graph -> importance -> allocation (search) -> plan -> rewrite passes -> verify.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import numpy as np
import torch

from .apply import apply_plan
from .budget import Budget, BudgetError
from .depgraph import DependencyGraph
from .finish import finish, report_of, timed
from .importance import CRITERIA
from .inspect_model import count_cost, inspect
from .options import check_prune_options
from .passes import MODULE_STATE_KEY, warn_hooks_not_kept
from .parametrized import warn_baked
from .passes.in_place import InPlaceError, choose_output
from .trace import AUTO_LEAVES, _trace_graph, private_copy
from .trace_state import collect_hooks, hooked_module_names
from .plan import Plan
from .result import PruneReport, PruneResult
from .search import AllocationConfig
from .search.cost import resolve_ms
from .search.latency_budget import latency_provider, meet_latency
from .search.registry import unit_scores
from .strategies import Strategy, strategy_row
from .capture import capture
from .dead_units import zero_dead_scores
from .depgraph.conv_groups import check_grouped, describe_groups
from .depgraph.heads import check_attention, describe_heads, split_budget

__all__ = ["prune", "inspect", "apply_plan", "PruneResult", "PruneReport", "count_cost"]


def _ignored_groups(graph: DependencyGraph, ignored_layers: Iterable) -> frozenset[str]:
    gm = graph.traced.gm
    names = set()
    for layer in ignored_layers:
        if isinstance(layer, str):
            names.add(layer)
        else:
            raise TypeError("ignored_layers takes qualified module names (strings), e.g. ['fc']; "
                            f"got {type(layer).__name__}")
    known = {n for n, _ in gm.named_modules()}
    unknown = names - known
    if unknown:
        raise ValueError(f"ignored_layers {sorted(unknown)} are not modules of this model")
    hit = set()
    for g in graph.groups:
        for d in g.parameters:
            owner = d.value[1:].rpartition(".")[0]
            if any(owner == n or owner.startswith(n + ".") for n in names):
                hit.add(g.name)
    return frozenset(hit)


def _recapture(traced, example_inputs, leaf_modules, concrete_args, keep_hooks: bool) -> Callable:
    """The front end ``traced`` came from, with the same settings, as ``model -> graph``: the in-place check
    (``passes/in_place.py``) compares the graph of the user's class at the pruned widths with the pruned one.
    fx: the graph only, not run (the check runs it after comparing); modules ``leaf_modules="auto"`` made
    opaque are named."""
    if traced.front_end != "fx":
        return lambda m: capture(m, example_inputs, front_end=traced.front_end).gm
    leaves = [leaf_modules] if isinstance(leaf_modules, str) else list(leaf_modules or ())
    leaves = [leaf for leaf in leaves if not (isinstance(leaf, str) and leaf == AUTO_LEAVES)] + \
        list(traced.opaque_modules)

    def fx_graph(model: torch.nn.Module) -> torch.fx.GraphModule:
        private = private_copy(model)
        private.eval()  # NOTE: as ``trace`` does: traced in inference, training reads linked
        if isinstance(private, torch.fx.GraphModule) and not leaves and concrete_args is None:
            return private
        extra = hooked_module_names(collect_hooks(model)) if keep_hooks else frozenset()
        return _trace_graph(private, leaves, concrete_args, extra)[0]

    return fx_graph


def _search_and_rewrite(traced, b: Budget, strategy: Strategy, importance, floors: dict, ignored_layers,
                        seconds: dict[str, float], search_kw: dict | None = None, latency_for=None):
    """Stages 2-5 through the one finishing step (``finish.py``: fenced and retried on a failed verify).

    Returns (graph, keep, pruned, cfg); ``latency_for(graph)`` gives ``cfg.latency`` (or is None)."""
    configs: list[AllocationConfig] = []

    def choose(graph: DependencyGraph) -> np.ndarray:
        if not graph.groups and b.ratio < 1.0:
            reasons = "; ".join(f.reason for f in graph.frozen[:3]) or "no layer with prunable output channels"
            raise BudgetError(f"nothing to prune in {type(traced.gm).__name__}: {reasons}")
        cfg = AllocationConfig(**floors, ignored=_ignored_groups(graph, ignored_layers),
                               latency=timed(seconds, "latency_model", latency_for, graph) if latency_for else None)
        configs.append(cfg)
        return graph.full_keep() if resolve_ms(b, cfg.latency).unbounded else timed(
            seconds, "search", lambda: _choose_keep(graph, importance, b, strategy, cfg, search_kw or {}))

    done = finish(traced, choose, seconds)
    return done.graph, done.handover.keep, done.model, configs[-1]


def _choose_keep(graph: DependencyGraph, importance, b: Budget, strategy: Strategy, cfg: AllocationConfig,
                 search_kw: dict) -> np.ndarray:
    """Stages 3 and 4: unit scores, then the strategy's keep mask."""
    scores = zero_dead_scores(graph, unit_scores(graph, importance, cfg, search_kw.get("calib_data")))
    return strategy.choose_keep(graph, scores, b, cfg, **search_kw)


def prune(model: torch.nn.Module, budget: Budget | float, example_inputs: Any, *,
          strategy: str = "global", importance: str | Callable = "l2", round_to: int | str = "auto",
          min_channels: int = 1, max_prune_ratio: float = 0.95, ignored_layers: Iterable[str] = (),
          leaf_modules: Iterable = (), concrete_args: dict | None = None, front_end: str = "auto",
          return_result: bool = False, eval_fn: Callable | None = None, calib_data: Iterable | None = None,
          search_options: dict | None = None, train_data: Any = None,
          supernet: Any = None, keep_hooks: bool = False, target: Any = None,
          latency_model: Any = None, output: str = "auto",
          attention: str = "auto", grouped: str = "auto") -> torch.nn.Module | PruneResult:
    """Prune ``model`` so its MACs (or params) keep at most ``budget`` of the dense model's.

    Args:
        model: any traceable ``nn.Module``; it is never modified.
        budget: fraction in (0, 1] of MACs to keep (float, numpy scalar or 0-d tensor), ``Budget.params(r)``,
            ``Budget.latency(r)`` (fraction of the dense model's time on ``target``), ``Budget.ms(t)``, or several
            at once (``a & b``).
        example_inputs: tensor(s) with the shapes the model will see (costs are counted on these).
        strategy: ``"global"`` (normalised importance ranked across groups) or ``"uniform"``.
        importance: ``"l1"``, ``"l2"``, ``"bn"``, ``"random"`` or ``fn(graph) -> scores``; ``"l2_latency"`` (any
            criterion + ``"_latency"``) divides by the time a unit frees on the target (for ``"global_raw"``).
        round_to: ``"auto"``: kept channel counts from a menu per group (the latency model's step ends with
            a latency model, else multiples of 8 / 4 by group size, ``search/menus.py``); an int: multiples
            of it (unless a group is kept whole); 1: exact.
        min_channels: minimum channels (units) any group keeps.
        max_prune_ratio: no group loses more than this fraction.
        ignored_layers: qualified module names (or one name) whose channels are never pruned.
        leaf_modules / concrete_args: passed to the tracer (see ``graphprune.trace``).
        front_end: ``"auto"`` (torch.fx, then torch.export, then recording a real run — detectors; a warning names
            the one used), ``"fx"``, ``"export"`` or ``"record"`` (``graphprune.capture``; a recorded model with
            data-dependent control flow comes back as the user's own class, never as the graph).
        return_result: return ``PruneResult(model, plan, report, graph)`` instead of the module.
        eval_fn / calib_data / search_options: for the searching strategies ``"sensitivity"``,
            ``"evolutionary"``, ``"rl"`` (``graphprune.strategies.REGISTRY`` lists every strategy) and data-driven
            importance (``"taylor"``, ``"group_fisher"``): ``eval_fn(model) -> float`` (higher is better), calibration
            batches, and strategy options (e.g. ``{"episodes": 64}``).
        train_data: a training ``Dataset`` for the training-time learners ``"bn-ista"``, ``"slimming"``,
            ``"gal"``, ``"hsn"`` (``graphprune.learners``; their config fields go in ``search_options``),
            or for the supernet option.
        supernet: ``SupernetConfig`` (``graphprune.search.supernet``) or True, with a searching strategy
            and ``train_data``: candidates are scored on a copy of the model briefly trained on sampled
            sub-networks; the pruned model still gets the original weights (see that module).
        keep_hooks: re-register the model's forward/backward hooks on the corresponding modules of the
            pruned model (root hooks on the GraphModule; hooked submodules stay opaque call sites so their
            hooks fire).  A hook that reads a pruned width sees the new width.  By default the pruned model
            has no hooks and a warning lists the ones not carried over.
        target / latency_model: for latency budgets and latency width menus: a ``graphprune.latency.Target``
            (default ORT CPU, 1 thread, batch 1: measured per-layer table) or a ``LatencyModel`` /
            ``fn(graph) -> LatencyModel``.  A latency budget is checked by timing both models end to end and
            re-planned when off by more than 2 % (``search/latency_budget.py``).
        output: ``"auto"`` (default): the user's own class with sliced tensors and updated size attributes
            when the model's code bakes no pruned size, else the ``GraphModule`` (``PruneReport.output_kind``
            and ``output_reason`` say which and why); ``"module"``: the user's class or ``InPlaceError``
            naming the node that bakes a size; ``"graph"``: always the ``GraphModule``
            (``graphprune/passes/in_place.py``).
        attention: what one prunable unit of a multi-head attention is (``depgraph/heads.py``): ``"heads"``
            (whole heads: q, k, v rows and output-projection columns; GQA: a kv head with its query heads),
            ``"head_dim"`` (one offset in every head; the softmax scale keeps the original head dim), ``"both"``
            (heads first, then offsets of the heads left: two rounds, ``sqrt(budget)`` each), or ``"auto"``:
            heads when every attention has at least 8 heads and none is an ``nn.MultiheadAttention``
            (there a head unit spans the residual stream), else head dims.  Dead heads are scored 0.
        grouped: what one prunable unit of a grouped convolution is (``depgraph/conv_groups.py``): ``"groups"``
            (whole groups: the group count shrinks, the width per group stays), ``"group_width"`` (one offset
            in every group: the group count stays), or ``"auto"`` (whole groups where a conv has at least 4
            groups, else offsets).

    Returns:
        A new, physically smaller model: a deep copy of the user's class (``output="module"``) or a
        ``torch.fx.GraphModule``.  Every module has the ``training`` flag of the user's module with the same
        name, and every parameter, buffer and submodule keeps its qualified name (names that cannot be kept
        are listed in ``PruneReport.dropped``).
    """
    opts = check_prune_options(model, budget, strategy=strategy, importance=importance, round_to=round_to,
                               min_channels=min_channels, max_prune_ratio=max_prune_ratio,
                               ignored_layers=ignored_layers, output=output)
    b, ignored_layers = opts.budget, opts.ignored_layers
    check_grouped(grouped)
    if check_attention(attention) == "both":
        return _prune_both(model, b, example_inputs, dict(
            strategy=strategy, importance=importance, round_to=round_to, min_channels=min_channels,
            max_prune_ratio=max_prune_ratio, ignored_layers=ignored_layers, leaf_modules=leaf_modules,
            concrete_args=concrete_args, front_end=front_end, eval_fn=eval_fn, calib_data=calib_data,
            search_options=search_options, train_data=train_data, supernet=supernet, keep_hooks=keep_hooks,
            target=target, latency_model=latency_model, output=output, grouped=grouped), return_result)
    row = strategy_row(strategy)
    row.check_inputs(eval_fn=eval_fn, calib_data=calib_data, train_data=train_data, supernet=supernet)
    _check_importance_data(importance, calib_data, row)
    if row.kind == "learner":
        if b.needs_latency:
            raise BudgetError("the training-time learners take MACs or params budgets, not latency ones")
        # NOTE: a learner owns stages 2-4 while training and ends in the same finish (graphprune.finish);
        # imported here so that a data-free prune never loads the learners
        from .learners.dispatch import prune_with_learner
        if opts.output == "module":
            raise InPlaceError("output='module' is not available with the training-time learners (they may "
                               "remove blocks and branches, which the model's code cannot express): pass "
                               "output='graph' or 'auto'")
        result = prune_with_learner(model, b, example_inputs, row.learner(search_options), train_data, True)
        result.report.output_reason = "the training-time learners return the graph"
        return result if return_result else result.model
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    traced = capture(model, example_inputs, front_end=front_end, leaf_modules=leaf_modules,
                     concrete_args=concrete_args, keep_hooks=keep_hooks)
    seconds["trace"] = time.perf_counter() - t
    traced.attention, traced.grouped = attention, grouped
    warn_hooks_not_kept(traced)
    warn_baked(model)
    floors = dict(round_to=opts.round_to, min_units=opts.min_channels, max_prune_ratio=opts.max_prune_ratio)
    search_kw = dict(eval_fn=eval_fn, calib_data=calib_data, options=search_options, supernet=supernet,
                     train_data=train_data)
    latency_for = latency_provider(b, target, latency_model)
    run = lambda bb, finest=False: _search_and_rewrite(  # noqa: E731  (finest: search/latency_budget.py rule 4)
        traced, bb, row, importance, {**floors, "finest_menus": finest}, ignored_layers, seconds, search_kw,
        latency_for)
    (graph, keep, pruned, cfg), outcome = meet_latency(run, b, model, example_inputs, seconds=seconds) \
        if b.needs_latency else (run(b), None)
    report = report_of(graph, keep, b, seconds, dropped=list(pruned.meta[MODULE_STATE_KEY].dropped),
                       width_policy=cfg.menus(graph, b).policy)
    report.add_latency(outcome)
    report.budget_text = b.describe()
    report.front_end = traced.front_end
    pruned, report.output_kind, in_place = timed(seconds, "output", choose_output, opts.output, pruned, traced,
                                                 _recapture(traced, example_inputs, leaf_modules, concrete_args,
                                                            keep_hooks))
    report.output_reason, report.output_notes, report.size_attributes = \
        in_place.reason, in_place.notes, in_place.attributes
    report.attention, report.grouped = describe_heads(graph, keep), describe_groups(graph, keep)
    plan = Plan.from_keep(graph, keep, budget=b.ratio, metric=b.metric, strategy=strategy,
                          importance=importance if isinstance(importance, str) else "custom",
                          achieved=getattr(report, f"{b.metric}_ratio"), attention=graph.attention,
                          grouped=graph.grouped)
    if return_result:
        return PruneResult(pruned, plan, report, graph)
    return pruned


def _check_importance_data(importance: Any, calib_data: Any, row: Strategy) -> None:
    """A data-driven criterion without ``calib_data`` is refused up front, even at budget 1.0 where no score
    is computed: the call would fail on any other budget."""
    if not isinstance(importance, str) or row.kind == "learner" or calib_data is not None:
        return
    base = importance.removesuffix("_latency")
    if base in CRITERIA and CRITERIA[base].needs_data:
        raise ValueError(f"importance {importance!r} scores channels on data: pass calib_data=<iterable of "
                         "(inputs, targets) batches> (or choose a weight-only criterion such as 'l2')")


def _prune_both(model: torch.nn.Module, b: Budget, example_inputs: Any, kw: dict,
                return_result: bool) -> fx.GraphModule | PruneResult:
    """``attention="both"``: whole heads first (to ``sqrt`` of the budget), then head-dim offsets of the heads
    left, on the first round's result, the rest of the way.  The plan and graph are the second round's (they
    apply to the first round's model); the report's ratios are of the dense model."""
    if b.needs_latency or b.also or b.metric not in ("macs", "params"):
        raise BudgetError("attention='both' takes a single MACs or params budget; prune with attention='heads' "
                          "then attention='head_dim' for other budgets")
    first_ratio, _ = split_budget(b.ratio)
    first = prune(model, Budget(first_ratio, b.metric), example_inputs, attention="heads", return_result=True, **kw)
    reached = getattr(first.report, f"{b.metric}_ratio")
    rest = min(1.0, b.ratio / reached) if reached > 0 else 1.0
    second = prune(first.model, Budget(rest, b.metric), example_inputs, attention="head_dim", return_result=True,
                   **kw)
    report = second.report
    report.dense_macs, report.dense_params = first.report.dense_macs, first.report.dense_params
    report.budget, report.budget_text = b.ratio, b.describe()
    report.attention = f"both: {first.report.attention} | then {second.report.attention}"
    report.seconds = {k: first.report.seconds.get(k, 0.0) + v for k, v in second.report.seconds.items()}
    plan = Plan(second.plan.kept, dict(second.plan.info, attention="both", budget=b.ratio))  # see apply_plan
    return PruneResult(second.model, plan, report, second.graph) if return_result else second.model

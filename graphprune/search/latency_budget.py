"""Latency budgets in ``prune``: which latency model to use, and the measure-and-re-plan loop.

The allocation meets a latency budget on the latency model's *prediction*.  The prediction sums per-layer
times measured in isolation, so the whole pruned model can run slower (or faster) than predicted.  After
the rewrite, :func:`meet_latency` times the dense and the pruned model end to end on the target
(``LatencyModel.measure_ms``, interleaved medians) and re-plans under a new latency cap (a fraction of the
*predicted* dense time) until a plan's measured time lands in the window [goal · (1 − CLOSE), goal · (1 +
tolerance)], at most ``max_iterations`` measured plans.  Goal and measurement are in the budget's own units
(a fraction of the measured dense time, or ms).  Caps aim a little inside the budget (``aim`` = goal · (1 −
tolerance)):

1. after one measurement: new cap = predicted ratio · aim / measured (the model's error taken as a factor);
2. after two or more, while no measured plan is too slow or none too fast: the secant through the last two
   (cap, measured) points, solved for ``aim`` (the model's error grows as widths shrink, so a constant factor
   converges slowly), clipped to [cap / 2, 1.5 cap]; the factor rule when the points do not slope upwards;
3. once a too-fast plan (cap ``lo``) and a too-slow one (cap ``hi``) bracket the goal: regula falsi between
   the two, kept inside the middle 80 % of [lo, hi]; the midpoint when the last two plans fell on the same
   side (regula falsi creeps towards an end that stays put);
4. a cap that gives a plan already measured (widths are discrete) is moved halfway towards the other side of
   the bracket and planned again without measuring, up to ``MAX_REPLANS`` times; when the two sides of the
   bracket are adjacent plans (a gap in the width menus around the goal), the next plans use the finest
   width menus (``finest=True``; the latency table's step ends, no coarser preference), if the caller offers
   them.

Noise: a measurement of the same two models moves by a few percent on a quiet CPU and by 20 % or more on a
loaded one.  A plan about to be returned is measured again (``CONFIRM`` times at most, the median decides),
and while a plan's measurement contradicts an earlier plan's by more than ``tolerance`` (predicted faster,
measured slower), the one measured fewest times is measured again (up to ``CONFIRM`` each).

The returned plan is the met plan (median measured ≤ goal · (1 + tolerance)) measured closest to the goal,
confirmed the same way (a plan returned after a gap or when the plans ran out is re-measured too);
:attr:`LatencyOutcome.stop` says why the loop stopped.  If none meets it, ``BudgetError`` names the numbers.
"""
from __future__ import annotations

import inspect
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..budget import Budget, BudgetError
from ..depgraph import DependencyGraph
from .cost import resolve_ms

__all__ = ["LatencyCheck", "LatencyOutcome", "latency_provider", "meet_latency"]

TOLERANCE = 0.02
# NOTE: a plan measured more than CLOSE below the budget is loosened again (if plans remain).  3 %, not the
# 5 % a user (or bench/latency.py) checks against: a second measurement of the same two models moves their
# ratio by a few percent on a shared CPU, and plans accepted at -5 % landed at -6 to -8 % when re-measured.
CLOSE = 0.03
MAX_ITERATIONS = 6  # measured plans
MAX_REPLANS = 4  # plans in a row that repeat a measured one (not measured, so cheaper)
CONFIRM = 3  # measurements at most of a plan about to be returned
MIN_BRACKET = 1e-3  # relative width of [lo, hi] below which no plan lies between its ends


@dataclass
class LatencyCheck:
    """One plan's predicted and measured times (ms) and the latency cap it was allocated under.

    ``measured_dense_ms`` is the median dense time over the plan's measurements and ``measured_ms`` that times
    the median pruned/dense ratio (one interleaved batch shares its load, so its ratio is the robust part);
    ``pairs`` holds every ``(dense ms, pruned ms)`` measurement.
    """

    cap: float
    predicted_dense_ms: float
    predicted_ms: float
    measured_dense_ms: float | None = None
    measured_ms: float | None = None
    pairs: list[tuple[float, float]] = field(default_factory=list)
    finest: bool = False  # planned on the finest width menus (a gap in the preferred ones, rule 4)

    def record(self, dense_ms: float, ms: float) -> None:
        self.pairs.append((float(dense_ms), float(ms)))
        self.measured_dense_ms = statistics.median(d for d, _ in self.pairs)
        self.measured_ms = statistics.median(p / d for d, p in self.pairs) * self.measured_dense_ms


@dataclass
class LatencyOutcome:
    """What the re-plan loop did: the target, the budget's goal, every plan's check, whether it was met, and
    why it stopped (``stop``, a sentence)."""

    target: str
    goal: str
    checks: list[LatencyCheck] = field(default_factory=list)
    met: bool = False
    chosen: int = -1  # index of the returned plan's check
    stop: str = ""

    @property
    def iterations(self) -> int:
        return len(self.checks)

    @property
    def final(self) -> LatencyCheck:
        """The returned plan's check (the last one when none met the budget)."""
        return self.checks[self.chosen]


def latency_provider(budget: Budget, target: Any = None, latency_model: Any = None
                     ) -> Callable[[DependencyGraph], Any] | None:
    """``graph -> LatencyModel`` for ``prune``, or None when no latency is involved.

    A latency budget, a ``target`` or a ``latency_model`` asks for one; a MACs or params budget alone does
    not (no surprise measuring: ``round_to="auto"`` then uses the heuristic menus).  ``latency_model`` is
    an instance (used as is: it must describe this model on these inputs) or ``fn(graph)``; by default the
    measured table of ``graphprune.latency.build_latency_model`` for ``target`` (default ``Target()``).
    """
    if latency_model is None and target is None and not budget.needs_latency:
        return None
    if latency_model is not None and hasattr(latency_model, "predict_ms"):
        return lambda graph: latency_model
    if latency_model is not None and not callable(latency_model):
        raise TypeError("latency_model takes a LatencyModel (predict_ms, width_menu, measure_ms) or "
                        f"fn(graph) -> LatencyModel, got {type(latency_model).__name__}")
    cache: dict[tuple, Any] = {}

    def provide(graph: DependencyGraph) -> Any:
        # NOTE: re-plans and verification retries rebuild the graph; the same structure reuses one model
        key = tuple((g.name, g.n_units) for g in graph.groups)
        if key not in cache:
            cache[key] = latency_model(graph) if latency_model is not None else _measured(graph, target)
        return cache[key]
    return provide


def _measured(graph: DependencyGraph, target: Any) -> Any:
    from ..latency.model import Target
    from ..latency.table import build_latency_model  # NOTE: lazy: the measured table is optional machinery

    return build_latency_model(graph, target if target is not None else Target())


def _with_cap(budget: Budget, cap: float) -> Budget:
    """``budget`` with its latency part replaced by a fraction ``cap`` of the predicted dense time."""
    parts = [Budget(min(1.0, cap), "latency") if p.metric == "latency" else p for p in budget.parts()]
    return replace(parts[0], also=tuple(parts[1:]))


def _latency_part(budget: Budget) -> Budget:
    return next(p for p in budget.parts() if p.metric == "latency")


def _in_goal_units(goal: Budget, ms: float, dense_ms: float) -> tuple[float, float]:
    """(measured, wanted): ms against ``Budget.ms``, else the measured fraction against the ratio."""
    if goal.time_ms is not None:
        return ms, goal.time_ms
    return ms / dense_ms, goal.ratio


@dataclass
class _Loop:
    """The state of one :func:`meet_latency` run: the plans measured, keyed by their keep masks."""

    plan: Callable[..., tuple]
    budget: Budget
    dense_model: Any
    example_inputs: Any
    tolerance: float
    seconds: dict[str, float] | None
    can_refine: bool
    outcome: LatencyOutcome | None = None
    planned: list[tuple] = field(default_factory=list)  # plan tuples, parallel to outcome.checks
    by_keep: dict[bytes, int] = field(default_factory=dict)
    aliases: list[tuple[float, int]] = field(default_factory=list)  # (cap, measured plan it repeated)
    repeated: int | None = None  # the measured plan the last ``plan_at`` repeated

    @property
    def goal(self) -> Budget:
        return _latency_part(self.budget)

    @property
    def checks(self) -> list[LatencyCheck]:
        return self.outcome.checks if self.outcome is not None else []

    def value(self, c: LatencyCheck) -> float:
        return _in_goal_units(self.goal, c.measured_ms, c.measured_dense_ms)[0]

    def wanted(self) -> float:
        return self.goal.time_ms if self.goal.time_ms is not None else self.goal.ratio

    def verdict(self, c: LatencyCheck) -> str:
        """``"slow"`` (misses the budget), ``"close"`` (in the window) or ``"fast"`` (met, by more than CLOSE)."""
        v, w = self.value(c), self.wanted()
        return "slow" if v > w * (1 + self.tolerance) else "close" if v >= w * (1 - CLOSE) else "fast"

    def plan_at(self, cap: float | None, finest: bool) -> int | None:
        """Plan under ``cap`` (None: the user's budget); the new check's index, or None when the plan repeats
        a measured one (whose index is then in ``self.repeated``)."""
        alloc = self.budget if cap is None else _with_cap(self.budget, cap)
        try:
            planned = self.plan(alloc, finest=True) if finest else self.plan(alloc)
        except BudgetError as exc:
            if self.outcome is None:
                raise
            raise BudgetError(_missed(self.outcome, self.goal, f"tightening further is refused: {exc}")) from exc
        _, keep, _, cfg = planned
        self.repeated = self.by_keep.get(keep.tobytes())
        if self.repeated is not None:
            return None
        latency = cfg.latency
        self.outcome = self.outcome or LatencyOutcome(latency.target.key, self.budget.describe())
        got = LatencyCheck(_latency_part(resolve_ms(alloc, latency)).ratio, float(latency.dense_ms),
                           float(latency.predict_ms(keep)), finest=finest)
        self.by_keep[keep.tobytes()] = len(self.checks)
        self.checks.append(got)
        self.planned.append(planned)
        self.measure(len(self.checks) - 1)
        return len(self.checks) - 1

    def measure(self, i: int) -> None:
        start = time.perf_counter()
        latency = self.planned[i][3].latency
        self.checks[i].record(*latency.measure_ms([self.dense_model, self.planned[i][2]], self.example_inputs))
        if self.seconds is not None:
            self.seconds["measure"] = self.seconds.get("measure", 0.0) + time.perf_counter() - start

    def contradicted(self, i: int) -> list[int]:
        """Earlier plans whose measurement contradicts plan ``i``'s by more than ``tolerance``: predicted faster
        but measured slower, or the other way round (noise: the table's order of plans is what it measures)."""
        c, v, out = self.checks[i], self.value(self.checks[i]), []
        for j, d in enumerate(self.checks[:i]):
            w = self.value(d)
            if (d.predicted_ms <= c.predicted_ms and w > v * (1 + self.tolerance)) or \
                    (d.predicted_ms >= c.predicted_ms and v > w * (1 + self.tolerance)):
                out.append(j)
        return out

    def bracket(self) -> tuple[int | None, int | None]:
        """(loosest too-fast plan, tightest too-slow plan), by cap; either None when there is none."""
        fast = [i for i, c in enumerate(self.checks) if self.verdict(c) == "fast"]
        slow = [i for i, c in enumerate(self.checks) if self.verdict(c) == "slow"]
        lo = max(fast, key=lambda i: self.checks[i].cap, default=None)
        hi = min(slow, key=lambda i: self.checks[i].cap, default=None)
        if lo is not None and hi is not None and self.checks[lo].cap >= self.checks[hi].cap:
            return None, None  # NOTE: noise inverted the order even after re-measuring: bracket unknown
        return lo, hi

    def bracket_caps(self) -> tuple[float, int | None, float, int | None]:
        """``(lo, lo plan, hi, hi plan)``: the loosest cap known to give a too-fast plan and the tightest known
        to give a too-slow one (caps that repeated a measured plan count as that plan's), 0 and 1 if none."""
        lo_i, hi_i = self.bracket()
        lo = max([self.checks[lo_i].cap] + [c for c, j in self.aliases if j == lo_i]) if lo_i is not None else 0.0
        hi = min([self.checks[hi_i].cap] + [c for c, j in self.aliases if j == hi_i]) if hi_i is not None else 1.0
        return lo, lo_i, hi, hi_i


def meet_latency(plan: Callable[..., tuple], budget: Budget, dense_model: Any, example_inputs: Any,
                 tolerance: float = TOLERANCE, max_iterations: int = MAX_ITERATIONS,
                 seconds: dict[str, float] | None = None) -> tuple[tuple, LatencyOutcome]:
    """Plan, measure, re-plan (module docstring).

    Args:
        plan: ``plan(budget) -> (graph, keep, pruned_module, cfg)`` with ``cfg.latency`` the latency model;
            if it takes a ``finest`` keyword, ``plan(budget, finest=True)`` plans on the finest width menus
            (used when the preferred menus have a gap around the goal).
        budget: the user's budget (its latency part a fraction, or ``Budget.ms``).
        seconds: if given, the end-to-end measurements' wall time is added under ``"measure"``.

    Returns:
        ``(plan's tuple, LatencyOutcome)`` of the met plan measured closest to the budget.
    """
    loop = _Loop(plan, budget, dense_model, example_inputs, tolerance, seconds, _offers_finest(plan))
    cap, finest, repeats = None, False, 0
    while len(loop.checks) < max_iterations:
        i = loop.plan_at(cap, finest)
        if i is None:  # rule 4: a plan already measured
            loop.aliases.append((cap if cap is not None else loop.checks[loop.repeated].cap, loop.repeated))
            repeats += 1
            cap, refined, why = _unmeasured_cap(loop, finest, repeats)
            if refined != finest:  # NOTE: which caps repeat which plan was learnt on the coarser menus
                repeats, finest, loop.aliases = 0, refined, []
            if cap is None:
                loop.outcome.stop = why
                break
            continue
        repeats = 0
        stop = _settle(loop, i)
        if stop:
            loop.outcome.stop = stop
            break
        cap = _next_cap(loop)
    else:
        loop.outcome.stop = f"{max_iterations} plans measured (max_iterations)"
    return _returned(loop)


def _offers_finest(plan: Callable[..., tuple]) -> bool:
    try:
        params = inspect.signature(plan).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "finest" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _settle(loop: _Loop, i: int) -> str:
    """Re-measure plan ``i`` where noise may decide (module docstring); why to stop after it, or ``""``."""
    c = loop.checks[i]
    # NOTE: the median of three outvotes one outlier; the plan measured fewest times is measured next
    while (against := loop.contradicted(i)) and min(len(loop.checks[j].pairs) for j in [i, *against]) < CONFIRM:
        loop.measure(min([i, *against], key=lambda j: len(loop.checks[j].pairs)))
    if loop.verdict(c) == "close":
        _confirm(loop, i)
    n, v = len(c.pairs), loop.value(c)
    if loop.verdict(c) == "close":
        return f"plan {i + 1} measured {v:.4g} (median of {n}) against {loop.wanted():.4g}, within the window"
    if loop.verdict(c) == "fast" and c.cap >= 1.0:
        return f"plan {i + 1} keeps the whole model (cap 1) and meets the budget"
    return ""


def _next_cap(loop: _Loop) -> float:
    """The latency cap of the next plan (module docstring, rules 1-3)."""
    aim = loop.wanted() * (1 - loop.tolerance)
    lo, lo_i, hi, hi_i = loop.bracket_caps()
    if lo_i is not None and hi_i is not None:  # rule 3
        v_lo, v_hi = loop.value(loop.checks[lo_i]), loop.value(loop.checks[hi_i])
        t = (aim - v_lo) / (v_hi - v_lo) if v_hi > v_lo else 0.5
        if len(loop.checks) >= 2 and len({loop.verdict(c) for c in loop.checks[-2:]}) == 1:
            t = 0.5  # NOTE: regula falsi creeps when one end stays put (a curved response): bisect then
        return lo + (hi - lo) * min(max(t, 0.1), 0.9)
    checks = loop.checks
    last = checks[-1]
    measured = loop.value(last)
    cap = _clipped(last.predicted_ms / last.predicted_dense_ms * aim / measured, last.cap)  # rule 1
    if len(checks) >= 2:  # rule 2
        prev_measured = loop.value(checks[-2])
        if last.cap != checks[-2].cap and (measured - prev_measured) / (last.cap - checks[-2].cap) > 0:
            slope = (measured - prev_measured) / (last.cap - checks[-2].cap)
            cap = _clipped(last.cap + (aim - measured) / slope, last.cap)
    # NOTE: measurements bracket the answer on one side at least: the search never walks back past it
    if lo_i is not None and cap <= lo:
        cap = (lo + min(1.0, 1.5 * lo)) / 2
    if hi_i is not None and cap >= hi:
        cap = 0.75 * hi
    return cap


def _unmeasured_cap(loop: _Loop, finest: bool, repeats: int) -> tuple[float | None, bool, str]:
    """After a cap repeated a measured plan (rule 4): ``(next cap, finest, "")``, or ``(None, _, why)``."""
    lo, lo_i, hi, hi_i = loop.bracket_caps()
    if hi - lo > MIN_BRACKET * max(hi, 1e-9) and repeats <= MAX_REPLANS:
        return (lo + hi) / 2, finest, ""
    if loop.can_refine and not finest:
        return _next_cap(loop), True, ""
    near = [f"plan {k + 1} ({loop.value(loop.checks[k]):.4g}, cap {loop.checks[k].cap:.4f})"
            for k in (lo_i, hi_i) if k is not None]
    return None, finest, (f"no other plan between {' and '.join(near)} on the "
                          f"{'finest ' if finest else ''}width menus (a gap around the goal)")


def _returned(loop: _Loop) -> tuple[tuple, LatencyOutcome]:
    """The met plan measured closest to the goal, confirmed like a plan in the window (``_confirm``), or
    ``BudgetError`` when none met it."""
    while met := [i for i, c in enumerate(loop.checks) if loop.verdict(c) != "slow"]:
        best = max(met, key=lambda i: loop.value(loop.checks[i]))
        _confirm(loop, best)
        if loop.verdict(loop.checks[best]) != "slow":
            loop.outcome.met, loop.outcome.chosen = True, best
            return loop.planned[best], loop.outcome
    raise BudgetError(_missed(loop.outcome, loop.goal, f"({loop.outcome.stop})"))


def _confirm(loop: _Loop, i: int) -> None:
    """Measure plan ``i`` until two measurements agree on its verdict, or ``CONFIRM`` of them (the median)."""
    c = loop.checks[i]
    while len(c.pairs) < CONFIRM:
        single = {loop.verdict(LatencyCheck(c.cap, 1.0, 1.0, d, p)) for d, p in c.pairs}
        if len(c.pairs) >= 2 and len(single) == 1:
            return
        loop.measure(i)


def _clipped(cap: float, last_cap: float) -> float:
    """A step of at most a factor 2 down or 1.5 up from the last cap, and never above the whole model."""
    return float(min(max(cap, last_cap / 2), last_cap * 1.5, 1.0))


def _missed(outcome: LatencyOutcome, goal: Budget, why: str) -> str:
    c = outcome.final
    wanted = f"{goal.time_ms:.3f} ms" if goal.time_ms is not None else \
        f"{goal.ratio:.3f} of the dense time ({goal.ratio * c.measured_dense_ms:.3f} ms)"
    return (f"latency budget {wanted} on {outcome.target} not met {why}: the last plan measured "
            f"{c.measured_ms:.3f} ms (dense {c.measured_dense_ms:.3f} ms, ratio "
            f"{c.measured_ms / c.measured_dense_ms:.3f}) where the latency model predicted {c.predicted_ms:.3f} ms "
            f"(dense {c.predicted_dense_ms:.3f} ms); raise the budget, relax the floors (min_channels, "
            "max_prune_ratio) or re-measure the latency table")

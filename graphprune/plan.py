"""The pruning plan: the plain, serialisable hand-off from search to rewrite (and the save format).

A plan names, per group, the units (channels) to keep by their index in the group's anchor parameter
dim.  Names come from parameter names, so a plan made on one instance of a model applies to a freshly
built instance of the same architecture.

Plans are read from files people edit and pass around, so every way in (``Plan(...)``, ``from_json``)
checks the types: a wrong one is a :class:`PlanError` naming the key and what was expected, never a
``TypeError`` deep in the rewrite or, worse, ``[true, false]`` silently read as unit ids 1 and 0.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .files import write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from .depgraph import DependencyGraph

__all__ = ["Plan", "PlanError", "PLAN_FORMAT_VERSION"]

PLAN_FORMAT_VERSION = 1
_JSON_KEYS = ("format", "torch", "kept", "info")


class PlanError(ValueError):
    """A plan that is malformed or does not fit the model it is applied to."""


def _unit_id(group: str, value: Any) -> int:
    # NOTE: bool is an Integral (True == 1); a mask pasted where ids belong must not pass as ids 1 and 0.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise PlanError(f"plan 'kept'[{group!r}] must hold unit ids (non-negative ints), "
                        f"got {value!r} ({type(value).__name__})")
    if value < 0:
        raise PlanError(f"plan 'kept'[{group!r}] has negative unit id {int(value)}")
    return int(value)


def _checked_kept(kept: Any) -> dict[str, tuple[int, ...]]:
    """``kept`` as ``{group name: sorted tuple of unique unit ids}``, or a PlanError saying what is wrong.

    An empty list is allowed here (a learner may remove a whole group); ``keep_mask`` refuses it.
    """
    if not isinstance(kept, dict):
        raise PlanError(f"plan 'kept' must map group names to lists of unit ids, got {type(kept).__name__}")
    checked = {}
    for group, ids in kept.items():
        if not isinstance(group, str):
            raise PlanError(f"plan 'kept' keys must be group-name strings, got {group!r} ({type(group).__name__})")
        if isinstance(ids, (str, bytes, dict)) or not isinstance(ids, (list, tuple, np.ndarray)):
            raise PlanError(f"plan 'kept'[{group!r}] must be a list of unit ids, got {type(ids).__name__}")
        unit_ids = [_unit_id(group, u) for u in ids]
        if len(set(unit_ids)) != len(unit_ids):
            repeated = sorted({u for u in unit_ids if unit_ids.count(u) > 1})
            raise PlanError(f"plan 'kept'[{group!r}] lists unit ids {repeated[:5]} more than once")
        checked[group] = tuple(sorted(unit_ids))
    return checked


@dataclass(frozen=True)
class Plan:
    """Kept unit ids per group name; groups not listed keep everything.

    Attributes:
        kept: group name -> sorted tuple of kept unit ids (anchor-dim indices), checked on construction.
        info: free-form provenance (budget, achieved ratio, strategy, versions).

    Raises:
        PlanError: ``kept`` is not a mapping of strings to lists of unique non-negative ints
            (bools are refused), or ``info`` is not a dict.
    """

    kept: dict[str, tuple[int, ...]]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kept", _checked_kept(self.kept))  # NOTE: frozen, so set through object
        if not isinstance(self.info, dict):
            raise PlanError(f"plan 'info' must be a dict, got {type(self.info).__name__}")

    @classmethod
    def from_keep(cls, graph: "DependencyGraph", keep: np.ndarray, **info: Any) -> "Plan":
        kept = {}
        for g in graph.groups:
            mask = keep[g.units]
            if not mask.all():
                kept[g.name] = tuple(int(u) for u in g.unit_ids[mask])
        return cls(kept, dict(info))

    def keep_mask(self, graph: "DependencyGraph") -> np.ndarray:
        """Unit mask over ``graph`` (raises PlanError if a group or unit is unknown)."""
        keep = graph.full_keep()
        names = {g.name: g for g in graph.groups}
        # NOTE: re-checked because ``kept`` is a plain dict that code may have changed since construction.
        for name, ids in _checked_kept(self.kept).items():
            if name not in names:
                raise PlanError(f"plan names group {name!r}, which this model does not have "
                                f"(is it the same architecture and example input shape?)")
            g = names[name]
            position = {int(u): i for i, u in enumerate(g.unit_ids)}
            missing = [u for u in ids if u not in position]
            if missing:
                raise PlanError(f"group {name!r} has no units {missing[:5]}")
            mask = np.zeros(g.n_units, dtype=bool)
            mask[[position[u] for u in ids]] = True
            if not mask.any():
                raise PlanError(f"group {name!r} would keep no channel")
            keep[g.units] = mask
        return keep

    def to_json(self) -> str:
        import torch

        body = {"format": PLAN_FORMAT_VERSION, "torch": torch.__version__,
                "kept": {k: list(v) for k, v in self.kept.items()}, "info": self.info}
        return json.dumps(body, indent=1, default=float)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Plan":
        """Parse and check a plan written by :meth:`to_json`.

        Raises:
            PlanError: not JSON, not an object, ``format`` is not ``PLAN_FORMAT_VERSION``, an unknown key,
                ``kept`` missing or not ``{str: [non-negative int, ...]}``, or ``info`` not an object.
        """
        try:
            body = json.loads(text)
        except (ValueError, TypeError, RecursionError) as error:
            raise PlanError(f"a plan must be JSON text: {type(error).__name__}: {error}") from None
        if not isinstance(body, dict):
            raise PlanError(f"a plan must be a JSON object with keys {list(_JSON_KEYS)}, got {type(body).__name__}")
        unknown = sorted(set(body) - set(_JSON_KEYS))
        if unknown:
            raise PlanError(f"plan has unknown keys {unknown[:5]} (expected only {list(_JSON_KEYS)})")
        version = body.get("format")
        if type(version) is not int or version != PLAN_FORMAT_VERSION:
            raise PlanError(f"plan 'format' must be {PLAN_FORMAT_VERSION}, got {version!r} "
                            f"(written by another graphprune version?)")
        if "kept" not in body:
            raise PlanError("plan has no 'kept' key (group name -> list of kept unit ids)")
        info = body.get("info", {})
        if not isinstance(info, dict):
            raise PlanError(f"plan 'info' must be a JSON object, got {type(info).__name__}")
        return cls(body["kept"], info)

    def save(self, path: str | Path) -> Path:
        """Write the plan as JSON (atomically: a failed save leaves the old file)."""
        return write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        try:
            return cls.from_json(Path(path).read_text())
        except PlanError as error:
            raise PlanError(f"{path}: {error}") from None

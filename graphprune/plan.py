"""The pruning plan: the plain, serialisable hand-off from search to rewrite (and the save format).

A plan names, per group, the units (channels) to keep by their index in the group's anchor parameter
dim.  Names come from parameter names, so a plan made on one instance of a model applies to a freshly
built instance of the same architecture.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .depgraph import DependencyGraph

__all__ = ["Plan", "PlanError", "PLAN_FORMAT_VERSION"]

PLAN_FORMAT_VERSION = 1


class PlanError(ValueError):
    """A plan that does not fit the model it is applied to."""


@dataclass(frozen=True)
class Plan:
    """Kept unit ids per group name; groups not listed keep everything.

    Attributes:
        kept: group name -> sorted tuple of kept unit ids (anchor-dim indices).
        info: free-form provenance (budget, achieved ratio, strategy, versions).
    """

    kept: dict[str, tuple[int, ...]]
    info: dict[str, Any] = field(default_factory=dict)

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
        for name, ids in self.kept.items():
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
    def from_json(cls, text: str) -> "Plan":
        body = json.loads(text)
        if body.get("format") != PLAN_FORMAT_VERSION:
            raise PlanError(f"plan format {body.get('format')} is not {PLAN_FORMAT_VERSION}")
        return cls({k: tuple(v) for k, v in body["kept"].items()}, body.get("info", {}))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        return cls.from_json(Path(path).read_text())

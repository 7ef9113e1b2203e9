"""The compression plan: which channels survive (a pruning ``Plan``) and each layer's weight bit-width.

A pruned channel is a channel quantised to 0 bits (AJPQ's view): :meth:`BitPlan.from_unit_bits` turns a
bit-width per unit (0 = pruned) and per layer into a plan, so searches may speak in bits only.

Layer bit-widths: 32 (fp32, not quantised), 8 (int8 weights and uint8 activations, ``scheme.py``) and, for
Linear layers only, 4 (ONNX Runtime's weight-only blockwise int4, ``int4.py``; the plan's ``int4`` field holds
its block size and symmetry, written to JSON only when some layer is int4, so older plans read unchanged).
Layers not listed are int8.  Plans are JSON keyed by module names, so they re-apply to a fresh instance
(``compress.apply_bitplan``), and every way in checks the types (a bad file is a ``PlanError`` naming the key).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..files import write_text_atomic
from ..plan import Plan, PlanError
from .int4 import INT4, Int4Scheme

if TYPE_CHECKING:  # pragma: no cover
    from ..depgraph import DependencyGraph

__all__ = ["BitPlan", "LAYER_BITS", "BITPLAN_FORMAT"]

LAYER_BITS = (32, 8, 4)
BITPLAN_FORMAT = "graphprune.bitplan/1"
_KEYS = ("format", "channels", "weight_bits", "info", "int4")


def _checked_bits(weight_bits: Any) -> dict[str, int]:
    if not isinstance(weight_bits, dict):
        raise PlanError(f"bit plan 'weight_bits' must map layer names to bits, got {type(weight_bits).__name__}")
    for name, bits in weight_bits.items():
        if not isinstance(name, str):
            raise PlanError(f"bit plan 'weight_bits' keys must be module names, got {name!r}")
        if isinstance(bits, bool) or bits not in LAYER_BITS:
            raise PlanError(f"bit plan 'weight_bits'[{name!r}] = {bits!r}; a layer takes one of {LAYER_BITS} "
                            "(0 bits is a pruned channel: leave it out of 'channels')")
    return {k: int(v) for k, v in weight_bits.items()}


@dataclass(frozen=True)
class BitPlan:
    """Channels and bit-widths.

    Attributes:
        channels: the pruning plan (kept unit ids per group; a unit not kept has 0 bits).
        weight_bits: module name -> 32, 8 or 4 (Linear only); layers not listed are int8.
        info: provenance (budget, achieved size / BOPs, strategy).
        int4: block size and symmetry of the int4 layers.
    """

    channels: Plan
    weight_bits: dict[str, int]
    info: dict[str, Any] = field(default_factory=dict)
    int4: Int4Scheme = field(default_factory=Int4Scheme)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight_bits", _checked_bits(self.weight_bits))
        if not isinstance(self.int4, Int4Scheme):
            raise PlanError(f"bit plan 'int4' must be an Int4Scheme, got {type(self.int4).__name__}")
        if not isinstance(self.channels, Plan):
            raise PlanError(f"bit plan 'channels' must be a graphprune.Plan, got {type(self.channels).__name__}")

    def bits_of(self, layer: str) -> int:
        return self.weight_bits.get(layer, 8)

    @classmethod
    def from_unit_bits(cls, graph: "DependencyGraph", unit_bits: np.ndarray, weight_bits: dict[str, int],
                       int4: Int4Scheme | None = None, **info: Any) -> "BitPlan":
        """A plan from a bit-width per unit of ``graph`` (0 = pruned, any other value = kept) and per layer."""
        unit_bits = np.asarray(unit_bits)
        if unit_bits.shape != (graph.n_units,):
            raise PlanError(f"unit_bits must have one entry per unit ({graph.n_units}), got shape {unit_bits.shape}")
        return cls(Plan.from_keep(graph, unit_bits > 0), dict(weight_bits), dict(info), int4 or Int4Scheme())

    def to_json(self) -> str:
        channels = json.loads(self.channels.to_json())
        body = {"format": BITPLAN_FORMAT, "channels": channels, "weight_bits": self.weight_bits, "info": self.info}
        if INT4 in self.weight_bits.values():
            body["int4"] = self.int4.to_dict()
        return json.dumps(body, indent=1, default=float)

    @classmethod
    def from_json(cls, text: str | bytes) -> "BitPlan":
        try:
            body = json.loads(text)
        except (ValueError, TypeError, RecursionError) as error:
            raise PlanError(f"a bit plan must be JSON text: {type(error).__name__}: {error}") from None
        if not isinstance(body, dict) or body.get("format") != BITPLAN_FORMAT:
            got = body.get("format") if isinstance(body, dict) else type(body).__name__
            raise PlanError(f"a bit plan is a JSON object with 'format': {BITPLAN_FORMAT!r}, got {got!r}")
        unknown = sorted(set(body) - set(_KEYS))
        if unknown:
            raise PlanError(f"bit plan has unknown keys {unknown[:5]} (expected only {list(_KEYS)})")
        info = body.get("info", {})
        if not isinstance(info, dict):
            raise PlanError(f"bit plan 'info' must be a JSON object, got {type(info).__name__}")
        int4 = Int4Scheme.from_dict(body["int4"]) if "int4" in body else Int4Scheme()
        return cls(Plan.from_json(json.dumps(body.get("channels"))), body.get("weight_bits", {}), info, int4)

    def save(self, path: str | Path) -> Path:
        """Write the plan as JSON (atomically)."""
        return write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "BitPlan":
        try:
            return cls.from_json(Path(path).read_text())
        except PlanError as error:
            raise PlanError(f"{path}: {error}") from None

"""On-disk cache of measured piece timings, so a second build on the same machine is (nearly) free.

One JSON file per (target, machine): ``<dir>/<target.key>-<fingerprint hash>.json`` holding the machine
fingerprint it was measured under, the timings of each piece spec (by ``PieceSpec.key``) and the dense
and half-width times of whole models (by a hash of the traced graph).  The fingerprint is the CPU model name, core count,
runtime name and version, torch version and the sweep protocol version: a different target or machine
never reads another's numbers.  Files are rewritten atomically (``graphprune.files``).

Location: ``$GRAPHPRUNE_CACHE/latency`` when that variable is set, else ``~/.cache/graphprune/latency``.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..files import write_text_atomic
from .model import Target
from .runners import runtime_version

__all__ = ["TimingCache", "default_cache_dir", "machine_fingerprint"]

PROTOCOL = 9  # 9: ORT sessions time without spinning pools (runners.ort_session_options); bump when the sweep grid or timing protocol changes: old entries are then not reused


def default_cache_dir() -> Path:
    root = os.environ.get("GRAPHPRUNE_CACHE")
    return Path(root) / "latency" if root else Path.home() / ".cache" / "graphprune" / "latency"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_fingerprint(target: Target) -> dict[str, Any]:
    """What the timings depend on besides the target's own settings."""
    return {"cpu": _cpu_name(), "cores": os.cpu_count(), "runtime": runtime_version(target),
            "torch": torch.__version__, "protocol": PROTOCOL}


@dataclass
class TimingCache:
    """Piece timings and dense times of one target on one machine (see module docstring).

    Attributes:
        path: the JSON file (None: an in-memory cache that never writes).
        pieces: ``PieceSpec.key`` -> the piece's stored sweep (``table.PieceTiming.to_json``).
        dense: model hash -> the whole-model calibration ``{"dense": ms, "half": ms or None, "fractions":
            {fraction: ms or None}}`` (``table.measure_table``; an older ``[dense, half]`` list is re-measured).
    """

    path: Path | None
    fingerprint: dict[str, Any]
    pieces: dict[str, Any] = field(default_factory=dict)
    dense: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, target: Target, cache_dir: str | Path | None | bool = None) -> "TimingCache":
        """The cache for ``target`` on this machine; ``cache_dir=False`` gives one that is never saved."""
        fingerprint = {"target": target.key, **machine_fingerprint(target)}
        if cache_dir is False:
            return cls(None, fingerprint)
        digest = hashlib.sha1(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
        path = Path(cache_dir or default_cache_dir()) / f"{target.key}-{digest}.json"
        cache = cls(path, fingerprint)
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                return cache  # NOTE: a damaged cache file is remeasured and overwritten, never trusted
            if data.get("fingerprint") == fingerprint:
                cache.pieces, cache.dense = dict(data.get("pieces", {})), dict(data.get("dense", {}))
        return cache

    def save(self) -> None:
        if self.path is None:
            return
        text = json.dumps({"fingerprint": self.fingerprint, "pieces": self.pieces, "dense": self.dense})
        write_text_atomic(self.path, text)

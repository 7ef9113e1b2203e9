"""Per-epoch training records, kept in memory and mirrored to a JSON file.

The file is rewritten after every epoch so a killed run still leaves a valid log::

    {"config": {...}, "meta": {...}, "epochs": [{"epoch": 1, "train_loss": ..., ...}, ...]}
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["EpochRecord", "TrainLog"]


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did. ``test_acc`` is ``None`` on epochs without evaluation."""

    epoch: int
    train_loss: float
    train_acc: float
    test_acc: float | None
    lr: float
    seconds: float


@dataclass
class TrainLog:
    """Accumulates :class:`EpochRecord`s; ``path=None`` keeps it in memory only."""

    config: dict
    path: str | None = None
    meta: dict = field(default_factory=dict)
    epochs: list[EpochRecord] = field(default_factory=list)

    def append(self, record: EpochRecord) -> None:
        self.epochs.append(record)
        self.write()

    def to_dict(self) -> dict:
        return {"config": self.config, "meta": self.meta, "epochs": [asdict(r) for r in self.epochs]}

    def write(self) -> None:
        if self.path is None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        Path(self.path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @property
    def final_accuracy(self) -> float | None:
        evaluated = [r.test_acc for r in self.epochs if r.test_acc is not None]
        return evaluated[-1] if evaluated else None

    @property
    def total_seconds(self) -> float:
        return sum(r.seconds for r in self.epochs)

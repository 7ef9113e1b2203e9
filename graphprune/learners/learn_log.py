"""Per-epoch learner records, mirrored to JSON after every epoch, and a PNG of MACs and accuracy.

File layout::

    {"learner": "gal", "config": {...}, "epochs": [
        {"epoch": 1, "losses": {"mse": ..., "adv": ...}, "sparsity": 0.31, "macs_ratio": 0.62,
         "accuracy": 0.87, "seconds": 12.3}, ...],
     "final": {"projection": {...}, "macs_ratio": ..., ...}}

``sparsity`` is the fraction of prunable units whose gate is zero (or off); ``macs_ratio`` is the cost
of the mask the learner would give now (before projection) over the dense cost.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LearnLog"]


@dataclass
class LearnLog:
    learner: str
    config: dict
    path: str | None = None
    plot_path: str | None = None
    epochs: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)

    def append(self, epoch: int, losses: dict, sparsity: float, macs_ratio: float,
               accuracy: float | None, seconds: float, **extra) -> None:
        record = {"epoch": epoch, "losses": {k: float(v) for k, v in losses.items()}, "sparsity": float(sparsity),
                  "macs_ratio": float(macs_ratio), "accuracy": accuracy, "seconds": float(seconds), **extra}
        self.epochs.append(record)
        self.write()

    def to_dict(self) -> dict:
        return {"learner": self.learner, "config": self.config, "epochs": self.epochs, "final": self.final}

    def write(self) -> None:
        if self.path is None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        Path(self.path).write_text(json.dumps(self.to_dict(), indent=1, default=float) + "\n")

    def plot(self, path: str | None = None) -> str | None:
        """MACs ratio and accuracy per epoch (two axes); returns the file written, if any."""
        path = path or self.plot_path
        if path is None or not self.epochs:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [r["epoch"] for r in self.epochs]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(epochs, [r["macs_ratio"] for r in self.epochs], "o-", color="tab:blue", label="MACs ratio")
        ax.set_xlabel("epoch")
        ax.set_ylabel("MACs ratio (learned mask)", color="tab:blue")
        acc = [(e, r["accuracy"]) for e, r in zip(epochs, self.epochs) if r["accuracy"] is not None]
        if acc:
            ax2 = ax.twinx()
            ax2.plot(*zip(*acc), "s--", color="tab:red")
            ax2.set_ylabel("accuracy", color="tab:red")
        ax.set_title(f"{self.learner}: training")
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

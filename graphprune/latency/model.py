"""The latency interface every consumer of measured time reads (allocation, search, report).

A *target* is a runtime with its settings.  A *latency model* predicts the wall time of the model pruned to
a keep mask over the dependency graph's units, offers each group the widths the hardware likes (the right
end of each latency step, so no width sits just past a jump), and measures whole modules end to end on the
same target, interleaved, for the final check.  The measured table (``table.py``) and the fake used by tests
both implement :class:`LatencyModel`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

__all__ = ["Target", "LatencyModel", "RUNTIMES"]

RUNTIMES = ("ort-cpu", "openvino-cpu", "torch-cpu", "torch-cuda")


@dataclass(frozen=True)
class Target:
    """Where the pruned model will run.

    Attributes:
        runtime: one of ``RUNTIMES``.
        threads: intra-op threads.
        batch: batch size the latency is measured at (the example input's batch is replaced by it).
        precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` where the runtime offers it (OpenVINO's CPU
            default is bf16 on AMX machines: name it, the widths it likes differ).
    """

    runtime: str = "ort-cpu"
    threads: int = 1
    batch: int = 1
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"unknown latency target runtime {self.runtime!r}; choose one of {RUNTIMES}")
        if int(self.threads) < 1 or int(self.batch) < 1:
            raise ValueError(f"target threads and batch must be >= 1, got {self.threads}, {self.batch}")

    @property
    def key(self) -> str:
        """A file-name-safe key: runtime, threads, batch and precision."""
        return f"{self.runtime}-t{self.threads}-b{self.batch}-{self.precision}"


@runtime_checkable
class LatencyModel(Protocol):
    """Predicted and measured time of one model on one target.

    Attributes:
        target: the target it was measured on.
        dense_ms: predicted time of the unpruned model (calibrated against a whole-model measurement).
    """

    target: Target
    dense_ms: float

    def predict_ms(self, keep: np.ndarray) -> float:
        """Predicted ms of the model pruned to ``keep`` (a bool mask over the graph's units)."""
        ...

    def width_menu(self, group_index: int) -> np.ndarray:
        """Ascending kept-unit counts worth choosing for group ``group_index`` (each the widest width of its
        latency step; the group's full width is always in it)."""
        ...

    def measure_ms(self, modules: Sequence[torch.nn.Module], example_inputs: Any) -> list[float]:
        """End-to-end median ms of each module on the target, timed interleaved in one process."""
        ...

"""Latency on the user's hardware: targets, measured per-layer tables, the latency model interface.

Stages: ``pieces`` (each conv/linear node as a standalone layer at any widths) -> ``sweep`` (time each
distinct piece along its prunable widths, interleaved, on the target's runtime via ``runners``) -> ``table``
(monotone width curves, staircases, calibration against the measured dense model: a ``LatencyModel``),
with ``cache`` keeping the timings per target and machine.  ``fake.FakeLatencyModel`` is the deterministic
stand-in for tests.
"""
from .fake import FakeLatencyModel
from .model import RUNTIMES, LatencyModel, Target
from .staircase import staircase
from .table import LatencyTable, TableLatencyModel, build_latency_model

__all__ = ["Target", "LatencyModel", "RUNTIMES", "FakeLatencyModel", "TableLatencyModel", "LatencyTable",
           "build_latency_model", "staircase"]

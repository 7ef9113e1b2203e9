"""Latency on the user's hardware: targets, measured per-layer tables, the latency model interface."""
from .model import RUNTIMES, LatencyModel, Target

__all__ = ["Target", "LatencyModel", "RUNTIMES"]

"""Stage 4: search — how much of each group to keep."""
from .allocate import Allocation, AllocationConfig, STRATEGIES, allocate

__all__ = ["allocate", "Allocation", "AllocationConfig", "STRATEGIES"]

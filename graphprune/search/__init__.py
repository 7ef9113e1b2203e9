"""Stage 4: search — how much of each group to keep.

Data-free allocation (``allocate``: uniform, global, global_raw) and searches that score candidates on
the masked, BN-recalibrated model (``SEARCHES``: sensitivity, evolutionary, rl, rate_distortion), plus the
budget-conditioned policy ``ConditionalSearch`` (imported lazily: it needs torch_geometric).  The
supernet option (``SupernetConfig``, ``train_supernet``) trains the weights candidates are scored on;
``distributed.sharded_evaluation()`` splits candidate batches across torchrun processes.
"""
from .allocate import Allocation, AllocationConfig, STRATEGIES, allocate, allocate_family, ratio_family
from .search_context import SearchContext, SearchResult
from .registry import SEARCHES, Search, run_search
from .supernet import SupernetConfig, train_supernet

__all__ = ["allocate", "allocate_family", "ratio_family", "Allocation", "AllocationConfig", "STRATEGIES",
           "SearchContext", "SearchResult", "SEARCHES", "Search", "run_search", "ConditionalSearch", "RLConfig",
           "SupernetConfig", "train_supernet"]


def __getattr__(name: str):
    if name in ("ConditionalSearch", "RLConfig"):
        from . import conditional

        return getattr(conditional, name)
    raise AttributeError(name)

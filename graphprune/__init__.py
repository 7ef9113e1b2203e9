"""graphprune — a graph-based structured-pruning compiler for PyTorch.

    import graphprune
    small = graphprune.prune(model, 0.5, example_inputs=torch.randn(1, 3, 224, 224))

Stages (one place in the code each): ``trace`` -> ``depgraph`` -> ``importance`` -> ``search`` ->
``passes`` (rewrite) -> ``export`` (ONNX, checks, report).
"""
from .api import PruneReport, PruneResult, apply_plan, count_cost, inspect, prune
from .budget import Budget, BudgetError
from .depgraph import DependencyGraph
from .passes import RewriteError, masked_model
from .passes.in_place import InPlaceError
from .passes.resize_modules import rebuild_like
from .plan import Plan, PlanError
from .trace import TraceError

__version__ = "0.1.0"

__all__ = ["prune", "inspect", "apply_plan", "count_cost", "Budget", "BudgetError", "Plan", "PlanError",
           "PruneReport", "PruneResult", "DependencyGraph", "TraceError", "RewriteError", "masked_model",
           "InPlaceError", "rebuild_like"]

"""Stage 2: channel dependency graph (dims, coupled channel sets, groups) and its op-rule tables."""
from .builder import build_dependency_graph
from .rule_context import Dim
from .graph import Cost, DependencyGraph, FrozenInfo, Group

__all__ = ["build_dependency_graph", "Dim", "DependencyGraph", "Group", "FrozenInfo", "Cost"]

"""What a rule's ``rewrite`` hook sees: one node of the graph being rewritten, old and new sizes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx

from ..depgraph import DependencyGraph, Dim

__all__ = ["RewriteContext"]


@dataclass
class RewriteContext:
    node: fx.Node
    module: torch.nn.Module | None
    graph: DependencyGraph
    keep: np.ndarray

    def value_of(self, x: Any) -> str | None:
        return x.name if isinstance(x, fx.Node) and x.name in self.graph.shapes else None

    @property
    def out(self) -> str | None:
        return self.node.name if self.node.name in self.graph.shapes else None

    @property
    def outs(self) -> list[str]:
        prefix = self.node.name + "#"
        items = [k for k in self.graph.shapes if k.startswith(prefix)]
        return sorted(items, key=lambda k: int(k.split("#")[1]))

    def ndim(self, value: str) -> int:
        return len(self.graph.shapes[value])

    def old_shape(self, value: str) -> tuple[int, ...]:
        return self.graph.shapes[value]

    def new_shape(self, value: str) -> tuple[int, ...]:
        return tuple(self.new_size(Dim(value, a)) for a in range(self.ndim(value)))

    def old_size(self, dim: Dim) -> int:
        return self.graph.shapes[dim.value][dim.axis]

    def new_size(self, dim: Dim) -> int:
        return len(self.kept(dim))

    def kept(self, dim: Dim) -> np.ndarray:
        return self.graph.kept_indices(dim, self.keep)

    def arg(self, index: int | None, name: str | None = None, default: Any = None) -> Any:
        if index is not None and index < len(self.node.args):
            return self.node.args[index]
        return self.node.kwargs.get(name, default) if name else default

    def set_arg(self, index: int, name: str, value: Any) -> None:
        """Set an argument where it was given (positional or keyword); else as keyword."""
        if index < len(self.node.args):
            args = list(self.node.args)
            args[index] = value
            self.node.args = tuple(args)
        else:
            self.set_kwarg(name, value)

    def set_kwarg(self, name: str, value: Any) -> None:
        kwargs = dict(self.node.kwargs)
        kwargs[name] = value
        self.node.kwargs = kwargs

    def replace_call(self, target: Any, args: tuple, kwargs: dict | None = None) -> None:
        """Turn the node into ``call_function target(*args, **kwargs)``."""
        self.node.op = "call_function"
        self.node.target = target
        self.node.args = args
        self.node.kwargs = kwargs or {}

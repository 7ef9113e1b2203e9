"""The vocabulary op rules speak: tensor dimensions, couplings between them, and freezes.

A *value* is anything with a shape: an fx node's output (``"conv1"``), one item of a node that returns a
tuple (``"split#1"``), or a parameter/buffer (``"@layer1.0.conv1.weight"``).  A ``Dim`` is one axis of
a value.  Rules describe how the channels of the dims an op touches correspond:

* ``same(a, b)``: element i of ``a`` is element i of ``b`` (residual add, BN scale, conv out vs weight rows);
* ``link(a, ia, b, ib)``: element ``ia[k]`` of ``a`` is element ``ib[k]`` of ``b`` (concat offsets,
  flatten blocks, grouped-conv offsets) — the index maps Torch-Pruning calls "index mapping";
* ``touch(a)``: the op handles pruning of ``a`` without coupling it (e.g. channels a slice drops);
* ``freeze(a, reason)``: ``a`` must keep every element.

A dim the rule does not mention is frozen by the builder: unknown means unprunable (fail closed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch.fx as fx


__all__ = ["Dim", "RuleContext"]


@dataclass(frozen=True, order=True)
class Dim:
    """One axis of one value."""

    value: str
    axis: int

    def __str__(self) -> str:
        return f"{self.value}[{self.axis}]"


class RuleContext:
    """What an op rule sees of one node, and the calls through which it records couplings."""

    def __init__(self, builder: Any, node: fx.Node):  # builder: a depgraph.builder._Builder
        self._b = builder
        self.node = node
        self.module = builder.modules.get(node.target) if node.op == "call_module" else None
        self.touched: set[Dim] = set()
        self.skip: set[str] = set()  # involved values this rule leaves to other nodes (tuple items)

    # ---- reading the node -------------------------------------------------------------------
    @property
    def out(self) -> str | None:
        """Value name of the node's (single tensor) output, or None."""
        return self.node.name if self.node.name in self._b.shapes else None

    @property
    def outs(self) -> list[str]:
        """Value names of every output of the node (tuple items for split-like ops)."""
        return self._b.values_of(self.node)

    def arg(self, index: int, name: str | None = None, default: Any = None) -> Any:
        """Positional argument ``index`` or keyword ``name`` of the node, raw (Node or constant)."""
        if index is not None and index < len(self.node.args):
            return self.node.args[index]
        if name is not None and name in self.node.kwargs:
            return self.node.kwargs[name]
        return default

    def value_of(self, x: Any) -> str | None:
        """The value name of an fx Node with a tensor output, else None."""
        if isinstance(x, fx.Node) and x.name in self._b.shapes:
            return x.name
        return None

    def tuple_values(self, x: Any) -> list[str]:
        """Value names of the items of a tuple-returning node (``name#k``)."""
        if not isinstance(x, fx.Node):
            return []
        return [v for v in self._b.values_of(x) if "#" in v]

    def tuple_outputs(self, x: fx.Node) -> tuple:
        """The (shape-propagated) items of a tuple-returning node, None where an item is not a tensor."""
        meta = x.meta.get("tensor_meta")
        return tuple(meta) if isinstance(meta, (tuple, list)) else ()

    def param(self, attr: str) -> str | None:
        """Value name of a parameter/buffer ``attr`` of the called module, if it exists."""
        if self.module is None:
            return None
        owner = self.module
        for part in attr.split("."):
            owner = getattr(owner, part, None)
        if owner is None:
            return None
        key = f"@{self.node.target}.{attr}"
        return key if key in self._b.shapes else None

    def shape(self, value: str) -> tuple[int, ...]:
        return self._b.shapes[value]

    def ndim(self, value: str) -> int:
        return len(self._b.shapes[value])

    def dims(self, value: str) -> Iterator[Dim]:
        return (Dim(value, a) for a in range(self.ndim(value)))

    def is_frozen(self, dim: Dim) -> bool:
        """Whether ``dim`` is already known to be frozen (upstream facts only; later nodes may add more)."""
        return self._b.is_frozen(dim)

    @property
    def attention(self) -> str:
        """What a unit of a head split is here: ``"heads"`` or ``"head_dim"`` (``depgraph/heads.py``)."""
        return self._b.attention

    @property
    def head_splits(self) -> dict:
        """Head splits recorded so far (node name -> ``heads.HeadSplit``)."""
        return self._b.head_splits

    @property
    def grouped(self) -> str:
        """What a unit of a grouped conv is here: ``"groups"`` or ``"group_width"`` (``depgraph/conv_groups.py``)."""
        return self._b.grouped

    @property
    def grouped_convs(self) -> dict:
        """Grouped convs recorded so far (node name -> ``conv_groups.GroupedConv``)."""
        return self._b.grouped_convs

    def choose(self, options: list[Dim]) -> int:
        """Index of the option to use where a rule could carry channels on any of ``options``.

        The first pass takes option 0; if that dim ends up frozen, the builder retries with the next.
        """
        return self._b.choice_for(self.node.name, options)

    # ---- recording ---------------------------------------------------------------------------
    def same(self, a: Dim, b: Dim) -> None:
        if self.shape(a.value)[a.axis] != self.shape(b.value)[b.axis]:
            self.freeze(a, f"size mismatch with {b}")
            self.freeze(b, f"size mismatch with {a}")
            return
        self.touched.update((a, b))
        self._b.union(a, b)

    def link(self, a: Dim, ia: np.ndarray, b: Dim, ib: np.ndarray) -> None:
        self.touched.update((a, b))
        self._b.add_links(a, np.asarray(ia, dtype=np.int64), b, np.asarray(ib, dtype=np.int64))

    def touch(self, *dims: Dim) -> None:
        self.touched.update(dims)

    def freeze(self, dim: Dim, reason: str, elements: np.ndarray | None = None) -> None:
        self.touched.add(dim)
        self._b.freeze(dim, f"{self.node.name} ({self._b.op_label(self.node)}): {reason}", elements)

    def source(self, dim: Dim) -> None:
        """Mark ``dim`` as producing channels (a layer's output features): only these are worth pruning."""
        self._b.sources.add(dim)
        if dim.value in self._b.attr_values:  # a get_attr node: the parameter itself names the group
            self._b.sources.add(Dim(self._b.attr_values[dim.value], dim.axis))

    def inexact(self, dim: Dim, why: str) -> None:
        """Pruning ``dim`` changes this op's statistics (e.g. LayerNorm): record it for reports and tests."""
        self._b.inexact.setdefault(dim, f"{self.node.name}: {why}")

    def macs(self, dims: list[Dim], coef: float = 1.0) -> None:
        """Add a cost term ``coef * prod(size(d) for d in dims)`` multiply-accumulates to this node."""
        self._b.add_macs(self.node.name, coef, list(dims))

    # ---- common shapes of coupling -------------------------------------------------------------
    def same_all(self, a: str, b: str) -> None:
        """Identity on every axis (shape-preserving ops)."""
        for axis in range(self.ndim(a)):
            self.same(Dim(a, axis), Dim(b, axis))

    def broadcast(self, out: str, inputs: list[str]) -> None:
        """Right-aligned broadcasting: equal-size axes are identical, size-1 axes are left alone."""
        n_out = self.ndim(out)
        for value in inputs:
            shape = self.shape(value)
            for axis in range(len(shape)):
                out_axis = n_out - len(shape) + axis
                if shape[axis] == self.shape(out)[out_axis]:
                    self.same(Dim(value, axis), Dim(out, out_axis))

    def touch_copies(self, out: str, x: str) -> None:
        """``expand``: output axes that ``x`` broadcasts from size 1 (or lacks) hold copies.  Any copies may go
        (the rewrite writes the new size): handled, not frozen.  Coupled only where a later op couples them
        (GQA/MQA ``repeat_kv``: copy ``r`` of a kv head serves query head ``r`` of its group)."""
        n_out, n_x = self.ndim(out), self.ndim(x)
        for axis in range(n_out):
            ax = axis - (n_out - n_x)
            if self.shape(out)[axis] > 1 and (ax < 0 or self.shape(x)[ax] == 1):
                self.touch(Dim(out, axis))


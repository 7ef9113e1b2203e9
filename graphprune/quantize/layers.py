"""The quantisable layers of a traced model: every call of a Conv1d/2d/3d or Linear module, in graph order.

A layer is named by its module's qualified name (``layer1.0.conv1``), the key of a bit-width plan; the name
survives pruning (``passes.module_state`` keeps names), so one plan addresses the dense, masked and pruned
models alike.  Graph order is also the order in which the TorchScript ONNX exporter writes their Conv / Gemm
nodes, which is how ``ort_ptq.py`` finds a layer's ONNX node.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.fx as fx
import torch.nn as nn

__all__ = ["QuantLayer", "quant_layers", "QUANT_MODULES"]

QUANT_MODULES: dict[type, str] = {nn.Conv1d: "conv", nn.Conv2d: "conv", nn.Conv3d: "conv", nn.Linear: "linear"}


@dataclass(frozen=True)
class QuantLayer:
    """One quantisable call site.

    Attributes:
        name: qualified module name (the plan key).
        node: fx node name of the call (the key of the dependency graph's MAC terms).
        kind: ``"conv"`` or ``"linear"``.
    """

    name: str
    node: str
    kind: str

    @property
    def weight_key(self) -> str:
        """The dependency graph's value name of the weight (``@<name>.weight``)."""
        return f"@{self.name}.weight"


def quant_layers(gm: fx.GraphModule) -> list[QuantLayer]:
    """Every call_module node whose module is exactly a Conv or Linear, in graph order.

    Raises:
        ValueError: a module is called more than once (one bit-width per module cannot name two call sites).
    """
    modules = dict(gm.named_modules())
    layers, seen = [], set()
    for node in gm.graph.nodes:
        if node.op != "call_module" or type(modules.get(node.target)) not in QUANT_MODULES:
            continue
        if node.target in seen:
            raise ValueError(f"module {node.target!r} is called more than once; a bit-width plan names modules, "
                             "so give each call its own module (or quantise this model without per-layer bits)")
        seen.add(node.target)
        layers.append(QuantLayer(node.target, node.name, QUANT_MODULES[type(modules[node.target])]))
    return layers

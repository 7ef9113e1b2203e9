"""Pass: the fake-quant simulation — a PyTorch model that computes what the int8 ONNX model computes.

Reads a traced (or pruned) GraphModule, calibration batches and a weight bit-width per layer.  Rewrites a
copy, in the order ONNX Runtime sees the model:

1. **fold BatchNorm** into the preceding conv (the ONNX exporter folds it in eval mode);
2. **observe**: after the input and the output of every int8 layer (``layers.py``) an observer records the
   fp32 min / max over ``calib_data`` — ORT's MinMax calibration, at the points its QDQ format quantises
   (a Conv / Gemm's activation input and its output; a tensor quantised for one consumer is seen quantised
   by all of them, as ORT rewires every consumer to the DequantizeLinear output).  Where the layer's only
   user is a ReLU / ReLU6 / clamp (``REMOVABLE``), the observer goes after that activation instead;
3. **quantise**: observers become per-tensor uint8 fake-quant nodes, int8 layers' weights and biases are
   replaced by their quantised-dequantised values (``scheme.py``); int4 Linear layers' weights by their
   blockwise int4 values (``int4.py``; weight-only: no observers, fp32 outputs and bias; at ``accuracy_level`` 4
   an :class:`Int4InputQuant` node in front simulates the kernel's on-the-fly int8 input).  fp32 layers are left
   alone.  An activation observed in place of its (int8) layer is removed, its fake-quant reading the layer's
   output: ORT's quantiser removes it the same way (its range, saturated, does the clipping; ``ort_ptq.py``).

The result scores a candidate without exporting it; ``tests/quantize`` holds it equal to ONNX Runtime's int8
model within a few output quantisation steps.  :func:`zero_bit_model` is the 0-bit view of a pruned channel:
the dense model with every parameter slice coupled to a pruned unit set to zero.  It records, per Linear layer,
the input columns that survive (``gm.meta[ZERO_BIT_INPUTS]``, kept by ``copy.deepcopy``): int4 blocks run along a Linear's inputs, and the
pruned layer's blocks hold only kept inputs, so the simulation blocks over those columns alone — the 0-bit and
the pruned model then quantise identically.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.experimental.optimization import fuse

from ..depgraph import DependencyGraph, Dim
from ..evaluate import split_batch
from .int4 import INT4, Int4Scheme, check_int4_layers, fake_quant_input_int8_blocks, fake_quant_weight_int4
from .layers import quant_layers
from .scheme import ActivationQParams, activation_qparams, fake_quant_activation, fake_quant_bias, \
    fake_quant_weight, weight_scales

__all__ = ["fake_quant_model", "zero_bit_model", "batch_inputs", "ActivationObserver", "ActivationFakeQuant",
           "ZERO_BIT_INPUTS"]

ZERO_BIT_INPUTS = "gp_zero_bit_inputs"


class ActivationObserver(nn.Module):
    """Identity that records the running min / max of what passes through (MinMax calibration)."""

    def __init__(self) -> None:
        super().__init__()
        self.lo, self.hi = float("inf"), float("-inf")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.lo = min(self.lo, float(x.detach().min()))
        self.hi = max(self.hi, float(x.detach().max()))
        return x


class ActivationFakeQuant(nn.Module):
    """Per-tensor uint8 quantise-dequantise with fixed parameters."""

    def __init__(self, qparams: ActivationQParams) -> None:
        super().__init__()
        self.qparams = qparams

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quant_activation(x, self.qparams)

    def extra_repr(self) -> str:
        return f"scale={self.qparams.scale:.4g}, zero_point={self.qparams.zero_point}"


class Int4InputQuant(nn.Module):
    """Per-row, per-block symmetric int8 quantise-dequantise of an int4 layer's input (accuracy_level 4)."""

    def __init__(self, block_size: int, columns: np.ndarray | None = None) -> None:
        super().__init__()
        self.block_size = block_size
        self.columns = None if columns is None else torch.as_tensor(columns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quant_input_int8_blocks(x, self.block_size, self.columns)


def _int4_input_quant(gm: fx.GraphModule, weight_bits: dict[str, int], int4: Int4Scheme,
                      kept_inputs: dict[str, np.ndarray]) -> None:
    """Put an :class:`Int4InputQuant` between every int4 layer and its input (that layer's use only)."""
    nodes = {n.name: n for n in gm.graph.nodes}
    for i, layer in enumerate(quant_layers(gm)):
        if weight_bits.get(layer.name, 8) != INT4:
            continue
        node = nodes[layer.node]
        name = f"_gp_int4_in_{i}"
        gm.add_submodule(name, Int4InputQuant(int4.block_size, kept_inputs.get(layer.name)))
        with gm.graph.inserting_before(node):
            quantised = gm.graph.call_module(name, (node.args[0],))
        node.replace_input_with(node.args[0], quantised)
    gm.graph.lint()
    gm.recompile()


def batch_inputs(batch: Any) -> tuple:
    """The model inputs of one calibration batch: ``x``, ``(x, y)`` or ``(x1, x2, y)`` (``evaluate.split_batch``)."""
    return split_batch(batch)[0]


def zero_bit_model(graph: DependencyGraph, keep: np.ndarray) -> fx.GraphModule:
    """The traced model with every parameter slice of an unkept unit zeroed (its channels at 0 bits).

    Shapes stay dense.  Where zero weights give a zero channel (conv / linear / BatchNorm chains) it computes
    what the pruned model computes, with the pruned channels reading 0.  ``gm.meta[ZERO_BIT_INPUTS]`` maps
    each Linear layer that lost inputs to the indices of the inputs it keeps (read by :func:`fake_quant_model`).
    """
    gm = copy.deepcopy(graph.traced.gm)
    kept_inputs = {}
    for layer in quant_layers(gm):
        dim = Dim(layer.weight_key, 1)
        n_in = gm.get_submodule(layer.name).weight.shape[1]
        if layer.kind == "linear" and dim in graph.dim_class and len(graph.kept_indices(dim, keep)) < n_in:
            kept_inputs[layer.name] = graph.kept_indices(dim, keep)
    gm.meta[ZERO_BIT_INPUTS] = kept_inputs
    with torch.no_grad():
        for name, tensor in gm.named_parameters():
            key = f"@{name}"
            for axis in range(tensor.dim()):
                if Dim(key, axis) not in graph.dim_class:
                    continue
                gone = np.setdiff1d(np.arange(tensor.shape[axis]), graph.kept_indices(Dim(key, axis), keep))
                if len(gone):
                    tensor.index_fill_(axis, torch.as_tensor(gone), 0.0)
    return gm


def _insert_after(gm: fx.GraphModule, node: fx.Node, module: nn.Module, name: str) -> None:
    gm.add_submodule(name, module)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node,))
    node.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)


# Exported as ONNX Relu / Clip: the activations ORT's QDQ quantiser removes after a quantised layer
REMOVABLE_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh)
REMOVABLE_FUNCTIONS = (torch.relu, nn.functional.relu, nn.functional.relu6, nn.functional.hardtanh, torch.clamp,
                       torch.clip)
REMOVABLE_METHODS = ("relu", "clamp", "clip")


def _removable(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), REMOVABLE_MODULES)
    if node.op == "call_function":
        return node.target in REMOVABLE_FUNCTIONS
    return node.op == "call_method" and node.target in REMOVABLE_METHODS


def _folded_activation(gm: fx.GraphModule, node: fx.Node) -> fx.Node | None:
    """The activation ORT folds into ``node``'s output quantisation: ``node``'s only user, if removable."""
    users = list(node.users)
    if len(users) == 1 and _removable(gm, users[0]) and users[0].args and users[0].args[0] is node:
        return users[0]
    return None


def _observe(gm: fx.GraphModule, weight_bits: dict[str, int]) -> tuple[dict[str, str], list[tuple[fx.Node, fx.Node]]]:
    """Insert observers; returns {fx node name of the observed value: observer module name} and the
    (layer, activation) pairs whose activation is observed in the layer's place (module docstring)."""
    nodes = {n.name: n for n in gm.graph.nodes}
    points: dict[str, str] = {}
    folded: list[tuple[fx.Node, fx.Node]] = []
    for layer in quant_layers(gm):
        if weight_bits.get(layer.name, 8) != 8:
            continue
        node = nodes[layer.node]
        act = _folded_activation(gm, node)
        if act is not None and act.name not in points:
            folded.append((node, act))
        for value in (node.args[0], act if act is not None else node):
            observed = isinstance(value, fx.Node) and value.op == "call_module" and \
                str(value.target).startswith("_gp_act_")
            if isinstance(value, fx.Node) and value.name not in points and not observed:
                points[value.name] = f"_gp_act_{len(points)}"
                _insert_after(gm, value, ActivationObserver(), points[value.name])
    gm.graph.lint()
    gm.recompile()
    return points, folded


def _remove_folded(gm: fx.GraphModule, folded: list[tuple[fx.Node, fx.Node]]) -> None:
    """Each folded activation's fake-quant reads the layer's output directly; the activation is dropped."""
    for layer, act in folded:
        act.replace_all_uses_with(layer)
        gm.graph.erase_node(act)
    gm.graph.lint()
    gm.recompile()


def _quantise_weights(gm: fx.GraphModule, weight_bits: dict[str, int], int4: Int4Scheme,
                      kept_inputs: dict[str, np.ndarray]) -> None:
    """Replace int8 layers' weights and biases by their quantised values (inputs already fake-quantised), and
    int4 layers' weights by their blockwise int4 values."""
    nodes = {n.name: n for n in gm.graph.nodes}
    with torch.no_grad():
        for layer in quant_layers(gm):
            module = gm.get_submodule(layer.name)
            if weight_bits.get(layer.name, 8) == INT4:
                columns = torch.as_tensor(kept_inputs.get(layer.name, np.arange(module.weight.shape[1])))
                module.weight[:, columns] = fake_quant_weight_int4(module.weight[:, columns], int4)
            if weight_bits.get(layer.name, 8) != 8:
                continue
            # NOTE: _observe put a fake-quant node between every int8 layer and its input
            in_scale = gm.get_submodule(nodes[layer.node].args[0].target).qparams.scale
            scales = weight_scales(module.weight)
            if module.bias is not None:
                module.bias.copy_(fake_quant_bias(module.bias, in_scale, scales))
            module.weight.copy_(fake_quant_weight(module.weight))


def as_graph_module(model: nn.Module) -> fx.GraphModule:
    """``model`` as a GraphModule: itself, or (``prune`` returns the user's own class by default) its fx trace."""
    if isinstance(model, fx.GraphModule):
        return model
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure gets the same advice
        raise TypeError(f"quantisation needs a torch.fx GraphModule and {type(model).__name__} does not trace "
                        f"({type(exc).__name__}: {str(exc)[:120]}); prune it with output='graph'") from exc


def fake_quant_model(model: fx.GraphModule, calib_data: Iterable, weight_bits: dict[str, int] | None = None,
                     int4: Int4Scheme | None = None) -> fx.GraphModule:
    """The fake-quant simulation of ``model`` (see module docstring); ``model`` is not modified.

    Args:
        model: a GraphModule (traced or pruned by graphprune) in eval semantics.
        calib_data: batches (tensors or (inputs, targets)); every batch is run once to calibrate.
        weight_bits: module name -> 4 (Linear only), 8 or 32 (default 8 for every Conv / Linear).
        int4: block size and symmetry of the int4 layers (default ``Int4Scheme()``).

    Raises:
        ValueError: ``calib_data`` is empty.
        PlanError: a Conv layer asks for int4.
    """
    weight_bits = dict(weight_bits or {})
    # NOTE: read before fuse, which builds a new GraphModule
    kept_inputs = getattr(model, "meta", {}).get(ZERO_BIT_INPUTS, {})
    gm = fuse(copy.deepcopy(as_graph_module(model)).eval(), no_trace=True)
    check_int4_layers(quant_layers(gm), weight_bits)
    points, folded = _observe(gm, weight_bits)
    seen = 0
    with torch.no_grad():
        for batch in calib_data:
            gm(*batch_inputs(batch))
            seen += 1
    if not seen:
        raise ValueError("fake_quant_model needs at least one calibration batch in calib_data")
    for observer_name in points.values():
        observer = gm.get_submodule(observer_name)
        setattr(gm, observer_name, ActivationFakeQuant(activation_qparams(observer.lo, observer.hi)))
    _remove_folded(gm, folded)
    int4 = int4 or Int4Scheme()
    _quantise_weights(gm, weight_bits, int4, kept_inputs)
    if int4.accuracy_level == 4:
        _int4_input_quant(gm, weight_bits, int4, kept_inputs)
    return gm

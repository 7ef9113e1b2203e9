"""Pieces: each cost-bearing layer of the graph as a small standalone model with chosen widths.

The dependency graph's cost terms say which nodes carry multiply-accumulates and which dim classes size
them.  A convolution or linear node's time depends on two prunable widths: its weight's *input* axis
(``in``, per group) and its *output* axis (``out``); batch, spatial size and kernel are fixed by the
trace.  :func:`node_pieces` reads, for each such node, a :class:`PieceSpec` (everything but the widths)
and the dim classes of its two axes; :func:`onnx_piece` / :func:`torch_piece` build the layer at any
widths.

Widths are class sizes (what ``graph.class_sizes(keep)`` returns), turned into layer settings so:

1. ``groups == 1``: ``c_in = in``.
2. grouped (``in`` channels per group, ``groups`` fixed): ``c_in = in · groups``.
3. depthwise-like (one input channel per group, ``mult`` outputs each), and grouped convs pruned by whole
   groups (``depgraph/conv_groups.py``, ``in`` channels per group, ``mult`` outputs): pruning removes whole
   groups, so ``groups = out / mult``, ``c_in = in · groups``, and the ``in`` axis is never pruned.

Identical specs (ResNets repeat their blocks) share one key, so each distinct layer is timed once.  Nodes
with cost terms that are not conv/linear (matmul, attention, transposed conv) get no piece; the table
prices them by MACs (see ``table.py``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..depgraph import DependencyGraph, Dim

__all__ = ["PieceSpec", "NodePiece", "node_pieces", "onnx_piece", "torch_piece", "piece_inputs"]

_CONV_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_FUNCTIONS = (F.conv1d, F.conv2d, F.conv3d)


@dataclass(frozen=True)
class PieceSpec:
    """One layer's settings, all but its two widths.

    Attributes:
        op: ``"conv"`` or ``"linear"``.
        lead: leading input dims (conv: ``(batch,)``; linear: every dim before the features), the first
            replaced by the target's batch.
        spatial: conv input spatial size; ``()`` for linear.
        kernel, stride, padding, dilation: conv settings (``padding`` is ``"same"``/``"valid"`` or ints).
        groups: traced group count; mult: output channels per group of a conv that loses whole groups
            (depthwise-like, or grouped with whole-group units), else 0.
        full_in, full_out: traced widths of the ``in`` (per group) and ``out`` axes.
        prunable: which of ``("in", "out")`` some group can shrink (the others stay at full width).
    """

    op: str
    lead: tuple[int, ...]
    spatial: tuple[int, ...] = ()
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] | str = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1
    mult: int = 0
    full_in: int = 0
    full_out: int = 0
    prunable: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Stable text key (cache and de-duplication)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return f"{self.op}-{hashlib.sha1(text.encode()).hexdigest()[:16]}"

    def full(self, axis: str) -> int:
        return self.full_in if axis == "in" else self.full_out

    def layer(self, w_in: int, w_out: int) -> tuple[int, int, int]:
        """``(c_in, c_out, groups)`` of the layer at widths ``w_in`` (per group) and ``w_out``."""
        if self.mult:
            groups = max(1, w_out // self.mult)
            return groups * w_in, groups * self.mult, groups
        if self.groups > 1:
            # NOTE: a grouped conv loses the same offsets in every group, so its real output widths are
            # multiples of the group count; a width between them is timed at the next one (ORT refuses others)
            w_out = -(-max(w_out, 1) // self.groups) * self.groups
        return w_in * self.groups, w_out, self.groups


@dataclass(frozen=True)
class NodePiece:
    """A cost-bearing node, its spec, and the dim classes sizing its ``in`` and ``out`` axes."""

    node: str
    spec: PieceSpec
    in_class: int
    out_class: int


def _tuple(value, n: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * n


def _conv_settings(node: fx.Node, modules: dict) -> dict | None:
    if node.op == "call_module" and isinstance(modules.get(node.target), _CONV_MODULES):
        m = modules[node.target]
        return dict(weight=f"@{node.target}.weight", stride=m.stride,
                    padding=m.padding, dilation=m.dilation, groups=m.groups, x=node.args[0])
    if node.op == "call_function" and node.target in _CONV_FUNCTIONS:
        args = list(node.args) + [None] * (7 - len(node.args))
        names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
        get = {n: node.kwargs.get(n, args[i]) for i, n in enumerate(names)}
        if not isinstance(get["weight"], fx.Node) or not isinstance(get["groups"] or 1, int):
            return None
        return dict(weight=get["weight"].name, stride=get["stride"] or 1,
                    padding=get["padding"] or 0, dilation=get["dilation"] or 1, groups=get["groups"] or 1,
                    x=get["input"])
    return None


def _conv_piece(graph: DependencyGraph, node: fx.Node, s: dict, batch: int, touched) -> NodePiece | None:
    x = s["x"]
    if not isinstance(x, fx.Node) or x.name not in graph.shapes or s["weight"] not in graph.shapes:
        return None
    x_shape, w_shape = graph.shapes[x.name], graph.shapes[s["weight"]]
    nd = len(w_shape) - 2
    if len(x_shape) != nd + 2:  # unbatched conv: no piece, priced by MACs
        return None
    groups = int(s["groups"])
    whole = getattr(graph, "grouped_convs", {}).get(node.name)
    whole_groups = whole is not None and whole.units == "groups"
    mult = w_shape[0] // groups if groups > 1 and (w_shape[1] == 1 or whole_groups) else 0
    pad = s["padding"] if isinstance(s["padding"], str) else _tuple(s["padding"], nd)
    in_class = graph.dim_class[Dim(s["weight"], 1)]
    out_class = graph.dim_class[Dim(node.name, 1)]
    spec = PieceSpec("conv", (batch,), tuple(x_shape[2:]), tuple(w_shape[2:]), _tuple(s["stride"], nd), pad,
                     _tuple(s["dilation"], nd), groups, mult, int(w_shape[1]), int(w_shape[0]),
                     _prunable(touched, in_class, out_class, depthwise=bool(mult)))
    return NodePiece(node.name, spec, in_class, out_class)


def _linear_piece(graph: DependencyGraph, node: fx.Node, modules: dict, batch: int, touched) -> NodePiece | None:
    if node.op == "call_module" and isinstance(modules.get(node.target), nn.Linear):
        x, weight = node.args[0], f"@{node.target}.weight"
    elif node.op == "call_function" and node.target is F.linear:
        x, w = node.args[0], node.kwargs.get("weight", node.args[1] if len(node.args) > 1 else None)
        if not isinstance(w, fx.Node):
            return None
        weight = w.name
    else:
        return None
    if not isinstance(x, fx.Node) or x.name not in graph.shapes or len(graph.shapes[x.name]) < 2:
        return None
    x_shape, w_shape = graph.shapes[x.name], graph.shapes[weight]
    in_class = graph.dim_class[Dim(weight, 1)]
    out_class = graph.dim_class[Dim(weight, 0)]
    spec = PieceSpec("linear", (batch,) + tuple(x_shape[1:-1]), full_in=int(w_shape[1]), full_out=int(w_shape[0]),
                     prunable=_prunable(touched, in_class, out_class, depthwise=False))
    return NodePiece(node.name, spec, in_class, out_class)


def _prunable(touched: np.ndarray, in_class: int, out_class: int, depthwise: bool) -> tuple[str, ...]:
    axes = [] if depthwise or not touched[in_class] else ["in"]
    return tuple(axes + (["out"] if touched[out_class] else []))


def node_pieces(graph: DependencyGraph, batch: int | None = None) -> tuple[list[NodePiece], list[str]]:
    """Pieces for the graph's conv/linear cost nodes, and the names of cost nodes left without one.

    Args:
        batch: replaces the traced batch (the first dim of each piece's input), when given.
    """
    gm = graph.traced.gm
    modules, nodes = dict(gm.named_modules()), {n.name: n for n in gm.graph.nodes}
    touched = np.diff(graph._unit_counts.indptr) > 0
    pieces, priced_by_macs, counted = [], [], {}
    for name, _, _ in graph._mac_terms:
        counted[name] = counted.get(name, 0) + 1
    for name, n_terms in counted.items():
        node = nodes[name]
        traced_batch = graph.shapes[node.name][0] if graph.shapes.get(node.name) else 1
        b = traced_batch if batch is None else batch
        settings = _conv_settings(node, modules)
        piece = None
        if n_terms == 1 and settings is not None:
            piece = _conv_piece(graph, node, settings, b, touched)
        elif n_terms == 1:
            piece = _linear_piece(graph, node, modules, b, touched)
        if piece is None:
            priced_by_macs.append(name)
        else:
            pieces.append(piece)
    return pieces, priced_by_macs


# ---- building a piece at given widths ------------------------------------------------------------
def _input_shape(spec: PieceSpec, c_in: int) -> list[int]:
    return [*spec.lead, c_in, *spec.spatial] if spec.op == "conv" else [*spec.lead, c_in]


def piece_inputs(spec: PieceSpec, w_in: int, w_out: int, seed: int = 0) -> np.ndarray:
    """A random float32 input for the piece at these widths."""
    c_in, _, _ = spec.layer(w_in, w_out)
    return np.random.default_rng(seed).standard_normal(_input_shape(spec, c_in), dtype=np.float32)


def _conv_pads(spec: PieceSpec) -> dict:
    if spec.padding == "same":
        return {"auto_pad": "SAME_UPPER"}
    pads = (0,) * len(spec.kernel) if spec.padding == "valid" else tuple(spec.padding)
    return {"pads": list(pads) * 2}


def onnx_piece(spec: PieceSpec, w_in: int, w_out: int, opset: int = 17):
    """The piece as an ONNX ``ModelProto`` built directly with ``onnx.helper`` (no torch export)."""
    from onnx import TensorProto, helper, numpy_helper

    c_in, c_out, groups = spec.layer(w_in, w_out)
    rng = np.random.default_rng(0)
    if spec.op == "conv":
        weight = rng.standard_normal((c_out, c_in // groups, *spec.kernel), dtype=np.float32)
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=list(spec.kernel),
                                strides=list(spec.stride), dilations=list(spec.dilation), group=groups,
                                **_conv_pads(spec))
        nodes = [node]
    else:
        weight = rng.standard_normal((c_in, c_out), dtype=np.float32)
        nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])]
    inits = [numpy_helper.from_array(weight, "w"),
             numpy_helper.from_array(np.zeros(c_out, dtype=np.float32), "b")]
    graph = helper.make_graph(nodes, "piece", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                             _input_shape(spec, c_in))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def torch_piece(spec: PieceSpec, w_in: int, w_out: int) -> nn.Module:
    """The piece as a torch module (for the eager runtimes)."""
    c_in, c_out, groups = spec.layer(w_in, w_out)
    if spec.op == "linear":
        return nn.Linear(c_in, c_out)
    conv = _CONV_MODULES[len(spec.kernel) - 1]
    return conv(c_in, c_out, spec.kernel, stride=spec.stride, padding=spec.padding, dilation=spec.dilation,
                groups=groups)

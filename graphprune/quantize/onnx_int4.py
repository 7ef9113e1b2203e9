"""ONNX passes for int4 Linear layers: Gemm → MatMul (+ Add), then ORT's 4-bit weight-only ``MatMulNBits``.

ONNX Runtime's ``MatMulNBitsQuantizer`` rewrites only ``MatMul`` nodes whose second input is a constant (K, N)
matrix, while the exporter writes ``nn.Linear`` on 2-D inputs as ``Gemm(x, W, b, transB=1)``.  So
``ort_ptq.quantize_onnx`` runs, for the layers a plan puts at 4 bits:

1. :func:`gemm_to_matmul` — each chosen Gemm becomes ``MatMul(x, alpha·op(B))`` and, when it has a bias,
   ``Add(·, beta·C)``; the MatMul keeps the Gemm's node name (so ``onnx_layer_nodes`` still names it);
2. :func:`check_same_outputs` — ORT runs the file before and after on a calibration sample; any difference beyond
   fp32 summation-order noise is an error (the rewrite must not change what the model computes);
3. static int8 QDQ for the other layers (``ort_ptq._quantize``, the int4 MatMuls excluded);
4. :func:`apply_matmul_nbits` — the chosen MatMuls become ``com.microsoft.MatMulNBits`` (``int4.py``'s scheme).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import numpy as np

from .int4 import Int4Scheme
from .ort_session import QuantizeError, cpu_session

__all__ = ["gemm_to_matmul", "check_same_outputs", "apply_matmul_nbits"]


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def gemm_to_matmul(model, node_names: Iterable[str]):
    """Rewrite the named Gemm nodes of ``model`` (an ``onnx.ModelProto``) into MatMul (+ Add); returns a copy.

    Reads each Gemm's ``alpha``, ``beta``, ``transA``, ``transB`` and its constant weight ``B`` (and bias ``C``);
    writes the (K, N) weight ``alpha · op(B)`` and the bias ``beta · C`` as new initializers (the old ones are
    dropped when nothing else reads them).  Named nodes that already are MatMuls are left alone.

    Raises:
        QuantizeError: a named node is missing or is neither Gemm nor MatMul; ``transA`` is set; the weight is
            not a 2-D initializer; the bias is computed (not an initializer) and ``beta`` is not 1.
    """
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    wanted = set(node_names)
    inits = {t.name: t for t in graph.initializer}
    by_name = {n.name: n for n in graph.node}
    missing = sorted(wanted - set(by_name))
    if missing:
        raise QuantizeError(f"int4 rewrite: no ONNX node named {missing[:3]}")
    new_nodes = []
    for node in graph.node:
        if node.name not in wanted or node.op_type == "MatMul":
            new_nodes.append(node)
            continue
        where = f"int4 rewrite of ONNX node {node.name!r} ({node.op_type})"
        if node.op_type != "Gemm":
            raise QuantizeError(f"{where}: only Gemm / MatMul nodes (Linear layers) can take int4 weights")
        attrs = _attrs(node)
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        if attrs.get("transA", 0):
            raise QuantizeError(f"{where}: transA=1 (a transposed activation) is not rewritten; export the Linear "
                                "on an untransposed input")
        if node.input[1] not in inits or len(inits[node.input[1]].dims) != 2:
            raise QuantizeError(f"{where}: the weight {node.input[1]!r} is not a constant 2-D initializer, so "
                                "there is nothing to quantise to int4")
        weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        weight = weight.T if attrs.get("transB", 0) else weight
        if alpha != 1.0:
            weight = weight * np.float32(alpha)
        weight_name = f"{node.input[1]}_int4_kn"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), weight_name))
        has_bias = len(node.input) > 2 and node.input[2] != ""
        matmul_out = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        new_nodes.append(onnx.helper.make_node("MatMul", [node.input[0], weight_name], [matmul_out], name=node.name))
        if has_bias:
            bias_name = node.input[2]
            if bias_name in inits:
                bias = numpy_helper.to_array(inits[bias_name]).astype(np.float32) * np.float32(beta)
                bias_name = f"{node.input[2]}_int4_bias"
                graph.initializer.append(numpy_helper.from_array(bias, bias_name))
            elif beta != 1.0:
                raise QuantizeError(f"{where}: a computed bias with beta={beta} is not rewritten")
            new_nodes.append(onnx.helper.make_node("Add", [matmul_out, bias_name], [node.output[0]],
                                                   name=f"{node.name}_bias"))
    graph.ClearField("node")
    graph.node.extend(new_nodes)
    _drop_unused_initializers(graph)
    return out


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend(keep)


def check_same_outputs(before: str | Path, after: str | Path, feed: dict[str, np.ndarray], rtol: float = 1e-5) -> float:
    """Run both ONNX files on ``feed``; max |difference| over the outputs, which must stay within ``rtol`` of the
    largest output magnitude (fp32 summation order; a real change of the computation is far larger).

    Raises:
        QuantizeError: the outputs differ beyond that.
    """
    want = cpu_session(before, 1).run(None, feed)
    got = cpu_session(after, 1).run(None, feed)
    worst = 0.0
    for a, b in zip(want, got):
        diff = float(np.abs(a - b).max())
        bound = rtol * max(1.0, float(np.abs(a).max()))
        if diff > bound:
            raise QuantizeError(f"the Gemm -> MatMul rewrite of {after} changed the outputs by {diff:.3g} "
                                f"(allowed {bound:.3g}); not quantising a model that no longer computes the same")
        worst = max(worst, diff)
    return worst


def apply_matmul_nbits(model, node_names: Iterable[str], scheme: Int4Scheme):
    """Turn the named MatMul nodes of ``model`` (an ``onnx.ModelProto``) into 4-bit ``MatMulNBits``; returns the
    new ModelProto.  Every other MatMul is left as it is (fp32 layers stay fp32, int8 QDQ ones keep their DQ).

    Raises:
        QuantizeError: a named node did not become MatMulNBits (e.g. its weight is not a constant).
    """
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    wanted = set(node_names)
    others = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in wanted]
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # NOTE: the quantiser logs progress on the root logger
    try:
        quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=scheme.block_size, is_symmetric=scheme.symmetric,
                                         accuracy_level=scheme.accuracy_level or None,
                                         nodes_to_exclude=others, nodes_to_include=sorted(wanted))
        quantizer.process()
    finally:
        root.setLevel(level)
    result = quantizer.model.model
    done = {n.name.removesuffix("_Q4") for n in result.graph.node if n.op_type == "MatMulNBits"}
    missing = sorted(wanted - done)
    if missing:
        raise QuantizeError(f"ONNX Runtime's MatMulNBits quantiser left {missing[:3]} unquantised (a MatMul with "
                            "a constant 2-D weight is needed)")
    return result

"""Stage 7 — quantise the exported model with ONNX Runtime: static PTQ, QDQ format, per-channel int8 weights.

Reads a pruned GraphModule, calibration batches and a weight bit-width per layer.  Writes (atomically, via
``graphprune.files``) the fp32 ONNX file and its int8 version:

1. export the model to fp32 ONNX (``graphprune.export.export_onnx``; BatchNorm is folded by the exporter);
2. find each layer's Conv / Gemm node: the exporter writes them in graph order, so the i-th quantisable
   layer is the i-th Conv / Gemm / MatMul with a constant weight — checked by weight shape, a mismatch is an
   error naming the layer (never a silently mis-assigned bit-width);
3. ``onnxruntime.quantization.quantize_static`` with the scheme of ``scheme.py`` (QDQ, uint8 activations,
   per-channel symmetric int8 weights, MinMax calibration; a Relu / Clip right after an int8 layer is folded
   into the layer's output quantisation) on ``calib_data`` split into single samples (the
   exported graph has a fixed batch of 1; MinMax ranges do not depend on batching); fp32 and int4 layers are
   ``nodes_to_exclude``;
4. int4 Linear layers (weight-only, ``int4.py``): their Gemm nodes are rewritten into MatMul + Add before step 3
   and turned into ``MatMulNBits`` after it (``onnx_int4.py``).

onnxruntime is imported only here (and in ``graphprune.export``).
"""
from __future__ import annotations

import copy

import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.fx as fx
from torch.fx.experimental.optimization import fuse

from ..export import export_onnx
from ..files import atomic_path
from ..trace import normalize_inputs
from .fakequant import as_graph_module, batch_inputs
from .int4 import INT4, Int4Scheme, check_int4_layers
from .ort_session import QuantizeError, cpu_session  # noqa: F401  (QuantizeError: re-exported)
from .layers import quant_layers

__all__ = ["quantize_onnx", "QuantizedOnnx", "onnx_layer_nodes", "ort_run", "interleaved_ms", "QuantizeError"]

_WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
# NOTE: Relu / Clip are handed to the quantiser so that it removes one that follows a quantised Conv / Gemm and
# gives the layer's output the activation's range (QDQRemovableActivation).  Left out, the layer's output and the
# activation's output got two scales, and ORT ran a DequantizeLinear -> QuantizeLinear requantisation between
# every pair of layers (34 pairs in MobileNetV2): pruned MobileNetV2 int8 ran slower than pruned fp32
# (bench/results/joint_quant_int8_speed.md).  fakequant.py removes the same activations.
_REMOVABLE_ACTIVATIONS = ("Relu", "Clip")


@dataclass
class QuantizedOnnx:
    """Files written by :func:`quantize_onnx` and their sizes on disk."""

    fp32_path: Path
    int8_path: Path
    fp32_bytes: int
    int8_bytes: int


def onnx_layer_nodes(onnx_path: str | Path, model: fx.GraphModule) -> dict[str, str]:
    """Module name -> ONNX node name for every quantisable layer of ``model`` (see module docstring, step 2)."""
    import onnx

    proto = onnx.load(str(onnx_path))
    consts = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    weighted = [n for n in proto.graph.node if n.op_type in _WEIGHTED_OPS and len(n.input) > 1
                and n.input[1] in consts]
    layers = quant_layers(model)
    if len(weighted) != len(layers):
        raise QuantizeError(f"{onnx_path}: {len(weighted)} Conv/Gemm/MatMul nodes with constant weights but the "
                            f"model has {len(layers)} Conv/Linear calls; cannot assign per-layer bit-widths")
    mapping = {}
    for layer, node in zip(layers, weighted):
        want = tuple(model.get_submodule(layer.name).weight.shape)
        got = consts[node.input[1]]
        if node.op_type == "MatMul":
            got = got[::-1]
        if want != got:
            raise QuantizeError(f"layer {layer.name!r} (weight {want}) lines up with ONNX node {node.name!r} "
                                f"(weight {got}); the exporter reordered layers, cannot assign bit-widths")
        mapping[layer.name] = node.name
    return mapping


class CalibrationReader:
    """ORT's ``CalibrationDataReader`` over calibration batches, ``batch`` samples per feed.

    ``batch`` is the ONNX file's fixed batch (1: one sample at a time).  A short last group is filled by
    cycling the first samples: MinMax ranges do not depend on how samples are grouped.
    """

    def __init__(self, calib_data: Iterable, input_names: list[str], batch: int = 1):
        self._feeds = self._grouped(calib_data, input_names, batch)

    @staticmethod
    def _grouped(calib_data: Iterable, input_names: list[str], batch: int) -> Iterator[dict]:
        def feed(rows: list[tuple]) -> dict:
            return {name: torch.cat([r[k] for r in rows]).numpy().astype(np.float32)
                    for k, name in enumerate(input_names)}

        first, group = [], []
        for inputs in map(batch_inputs, calib_data):
            for i in range(inputs[0].shape[0]):
                row = tuple(t[i:i + 1].detach().cpu() for t in inputs)
                first, group = first + [row] if len(first) < batch else first, group + [row]
                if len(group) == batch:
                    yield feed(group)
                    group = []
        if group:
            yield feed((group + first * batch)[:batch])

    def get_next(self) -> dict | None:
        return next(self._feeds, None)

    def __iter__(self):  # NOTE: ORT's CalibrationDataReader protocol
        return self

    def __next__(self):
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed


def _quantize(fp32: Path, out: Path, reader: Any, exclude: list[str]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from .scheme import REDUCE_RANGE

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))  # NOTE: ORT logs advice on the root logger; restored below
    try:
        quantize_static(str(fp32), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=REDUCE_RANGE,
                        op_types_to_quantize=list(_WEIGHTED_OPS + _REMOVABLE_ACTIVATIONS), nodes_to_exclude=exclude,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        root.setLevel(level)


def quantize_onnx(model: fx.GraphModule, example_inputs: Any, calib_data: Iterable, path: str | Path,
                  weight_bits: dict[str, int] | None = None, fp32_path: str | Path | None = None,
                  exporter: str = "auto", int4: Int4Scheme | None = None) -> QuantizedOnnx:
    """Export ``model`` and write its int8 QDQ version to ``path`` (see module docstring).

    Args:
        example_inputs: one sample (batch 1) with the model's input shape.
        calib_data: calibration batches (tensors or (inputs, targets)).
        weight_bits: module name -> 4 (Linear only), 8 or 32 (default 8).
        fp32_path: where to keep the fp32 file (default ``<path stem>.fp32.onnx`` beside ``path``).
        exporter: passed to ``export_onnx`` (``"auto"``, ``"dynamo"``, ``"torchscript"``).
        int4: block size and symmetry of the int4 layers (default ``Int4Scheme()``).
    """
    path = Path(path)
    fp32_path = Path(fp32_path) if fp32_path else path.with_name(path.stem + ".fp32.onnx")
    weight_bits = dict(weight_bits or {})
    model = as_graph_module(model)
    check_int4_layers(quant_layers(model), weight_bits)
    # NOTE: BatchNorm folded before export, as the simulation folds it: the dynamo exporter keeps BN nodes
    # (the TorchScript one folded them), and ORT would then quantise conv outputs before BN, not after
    export_onnx(fuse(copy.deepcopy(model).eval(), no_trace=True), example_inputs, fp32_path, exporter=exporter)
    nodes = onnx_layer_nodes(fp32_path, model)
    exclude = [nodes[name] for name, bits in weight_bits.items() if bits == 32 and name in nodes]
    int4_nodes = [nodes[name] for name, bits in weight_bits.items() if bits == INT4 and name in nodes]
    input_names = [f"input_{i}" for i in range(len(normalize_inputs(example_inputs)))]
    calib_data = list(calib_data)
    reader = CalibrationReader(calib_data, input_names)
    with tempfile.TemporaryDirectory() as scratch, atomic_path(path) as tmp:
        # NOTE: ORT writes augmented calibration models beside the output; keep them out of the user's folder
        work, source = Path(scratch) / "model.int8.onnx", fp32_path
        if int4_nodes:
            source = _int4_ready(fp32_path, Path(scratch) / "model.matmul.onnx", int4_nodes,
                                 next(iter(CalibrationReader(calib_data, input_names))))
        _quantize(source, work, reader, exclude + int4_nodes)
        if int4_nodes:
            import onnx

            from .onnx_int4 import apply_matmul_nbits

            onnx.save(apply_matmul_nbits(onnx.load(str(work)), int4_nodes, int4 or Int4Scheme()), str(work))
        tmp.write_bytes(work.read_bytes())
    return QuantizedOnnx(fp32_path, path, fp32_path.stat().st_size, path.stat().st_size)


def _int4_ready(fp32_path: Path, out: Path, int4_nodes: list[str], feed: dict) -> Path:
    """Write ``fp32_path`` with the int4 layers' Gemm nodes as MatMul + Add to ``out``, checked equal on ``feed``."""
    import onnx

    from .onnx_int4 import check_same_outputs, gemm_to_matmul

    onnx.save(gemm_to_matmul(onnx.load(str(fp32_path)), int4_nodes), str(out))
    check_same_outputs(fp32_path, out, feed)
    return out


def ort_run(path: str | Path, inputs: torch.Tensor, threads: int = 1) -> np.ndarray:
    """Outputs of the first ONNX output for a batch, run one sample at a time (the graph has batch 1)."""
    session = cpu_session(path, threads)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: inputs[i:i + 1].numpy()})[0] for i in range(len(inputs))])


def interleaved_ms(paths: list[str | Path], example: torch.Tensor, rounds: int = 20, runs: int = 20,
                   threads: int = 1) -> list[float]:
    """Median ms of one run per ONNX file, timed in rounds that visit every file in turn.

    NOTE: interleaving spreads the noise of a shared machine over all files alike, so their ratios hold
    even when the absolute times drift.
    """
    sessions = [cpu_session(p, threads) for p in paths]
    feeds = [{s.get_inputs()[0].name: example.numpy()} for s in sessions]
    for session, feed in zip(sessions, feeds):
        for _ in range(max(3, runs // 2)):
            session.run(None, feed)
    times: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for session, feed, out in zip(sessions, feeds, times):
            for _ in range(runs):
                start = time.perf_counter()
                session.run(None, feed)
                out.append(time.perf_counter() - start)
    return [1e3 * statistics.median(t) for t in times]

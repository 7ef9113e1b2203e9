"""Stage 6 — export and check: ONNX export, ONNX Runtime equivalence, latency.

Which exporter writes the file (``export_onnx``, ``exporter="auto"``):

1. the torch.export-based exporter (``torch.onnx.export(..., dynamo=True)``) first, for every model: fx
   GraphModules from the fx front end and aten GraphModules from the export front end alike.  It is the exporter
   PyTorch keeps (torch 2.14 marks the TorchScript one deprecated, "the feature will be removed") and it writes
   opset 18 (``opset`` below 18 is raised to 18: it has no older op set).
2. the TorchScript exporter (``dynamo=False``) only when the first one raises; the file then records
   ``exporter="torchscript"`` and ``fallback_reason`` (the dynamo error's root cause, one line), and a warning says so.

Both are given the example inputs' shapes with no dynamic axes, so every dim (batch included) is fixed in the file,
as before this order changed.  The dynamo exporter is slower: 1.9-5.9 CPU s per pruned ResNet-18 / MobileNetV2 /
ViT-B/16 / tiny BERT against 0.06-2.0 s (3-29x, ``bench/results/onnx_exporters.md``), for files ONNX Runtime runs at
the same speed.  ``latency.runners.measure_ms`` keeps this default all the same (it times the graph that ships, and
does not rest on the deprecated exporter); the per-layer latency pieces never use a torch exporter
(``latency/pieces.py`` builds them with ``onnx.helper``).
``exporter="torchscript"`` or ``"dynamo"`` asks for one exporter only.  onnxruntime is imported only in this module.

Neither function changes the user's model: both run it in eval mode and then put back every module's
own ``training`` flag (a BatchNorm frozen in eval inside a model in train mode stays in eval).
"""
from __future__ import annotations

import logging
import re
import statistics
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..files import atomic_path
from ..module_modes import eval_mode
from ..trace import normalize_inputs

__all__ = ["export_onnx", "check_onnx", "ort_latency", "flatten_outputs", "OnnxCheck", "OnnxFile", "ExportError",
           "EXPORTERS"]

EXPORTERS = {"auto": ("dynamo", "torchscript"), "dynamo": ("dynamo",), "torchscript": ("torchscript",)}
DYNAMO_MIN_OPSET = 18


class ExportError(RuntimeError):
    """ONNX export failed with both exporters, or an ONNX file does not match the model's outputs."""


class OnnxFile(type(Path())):
    """The path of an exported ONNX file (a ``pathlib.Path``), with how it was written.

    Attributes:
        exporter: ``"dynamo"`` or ``"torchscript"`` — the exporter that wrote the file.
        seconds: wall time of the successful export call.
        opset: the ONNX opset the file was written with.
        fallback_reason: why the dynamo exporter did not write it (its error), ``""`` when it did or was not asked.
    """

    exporter: str = ""
    seconds: float = 0.0
    opset: int = 0
    fallback_reason: str = ""


@dataclass
class OnnxCheck:
    """ONNX Runtime vs PyTorch on the same inputs, over every output.

    Attributes:
        max_abs_diff / max_rel_diff: largest over all outputs (rel = abs diff / max |PyTorch output|, per
            output); ``inf`` where an output's shape differs or only one side is NaN.
        worst_output: ONNX name of the output with the largest relative difference.
        output_diffs: ONNX output name -> (max abs diff, max rel diff), in graph order.
    """

    path: str
    max_abs_diff: float
    max_rel_diff: float
    worst_output: str = ""
    output_diffs: dict[str, tuple[float, float]] = field(default_factory=dict)


def export_onnx(model: torch.nn.Module, example_inputs: Any, path: str | Path, opset: int = DYNAMO_MIN_OPSET,
                exporter: str = "auto") -> OnnxFile:
    """Export ``model`` (eval mode) to ``path``; returns the path as an ``OnnxFile``.

    Args:
        exporter: ``"auto"`` (dynamo, then TorchScript if dynamo raises — module docstring), ``"dynamo"`` or
            ``"torchscript"`` (that one only).

    The file is written beside ``path`` and renamed over it only when the export succeeded, so a failed
    export leaves any previous file untouched.

    Raises:
        ExportError: every exporter tried failed (each one's error is named).
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {sorted(EXPORTERS)}, got {exporter!r}")
    inputs = normalize_inputs(example_inputs)
    errors = []
    with eval_mode(model):
        for name in EXPORTERS[exporter]:
            try:
                t = time.perf_counter()
                with atomic_path(path) as tmp:
                    used_opset = _export(model, inputs, tmp, opset, name)
                seconds = time.perf_counter() - t
            except Exception as exc:  # try the next exporter, report all
                errors.append(f"{name} exporter: {_first_line(exc)}")
                continue
            return _written(path, name, seconds, used_opset, errors)
    raise ExportError("ONNX export failed — " + " | ".join(errors))


def _first_line(exc: BaseException) -> str:
    """``Type: first line`` of the innermost cause: the dynamo exporter wraps the real reason ("No ONNX function
    found for aten.linalg_eig") in generic "step 3/3 failed, next steps" errors."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(root)).strip()
    where = f"{type(exc).__name__} caused by " if root is not exc else ""
    return f"{where}{type(root).__name__}: {text.splitlines()[0][:300] if text else ''}"


def _written(path: str | Path, exporter: str, seconds: float, opset: int, errors: list[str]) -> OnnxFile:
    out = OnnxFile(path)
    out.exporter, out.seconds, out.opset = exporter, seconds, opset
    out.fallback_reason = " | ".join(errors)
    if errors:
        warnings.warn(f"graphprune: ONNX written by the {exporter} exporter because {out.fallback_reason}",
                      stacklevel=3)
    return out


@contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence exporter chatter for one call: Python warnings, and onnxscript's optimizer logging constant
    folds it skips ("Evaluation failed: ..."), which does not make the file wrong (``check_onnx`` checks it)."""
    logger = logging.getLogger("onnxscript")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export(model: torch.nn.Module, inputs: tuple, tmp: Path, opset: int, exporter: str) -> int:
    """Write ``model`` to ``tmp`` with one exporter; returns the opset used."""
    names = [f"input_{i}" for i in range(len(inputs))]
    with _quiet_exporters():
        if exporter == "dynamo":
            # NOTE: external_data=False keeps the weights inside the one file that is renamed into place (it
            # would otherwise write a ``<tmp name>.data`` file beside it); no dynamic_shapes: fixed like before.
            opset = max(opset, DYNAMO_MIN_OPSET)
            torch.onnx.export(model, inputs, str(tmp), dynamo=True, opset_version=opset, input_names=names,
                              optimize=True, external_data=False, verbose=False)
        else:
            torch.onnx.export(model, inputs, str(tmp), dynamo=False, opset_version=opset, input_names=names)
    return opset


def _session(path: str | Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _feeds(session, inputs: tuple) -> dict:
    return {i.name: t.detach().cpu().numpy() for i, t in zip(session.get_inputs(), inputs)}


def flatten_outputs(output: Any) -> list[torch.Tensor]:
    """The tensors of a model output in the order ONNX exporters list them.

    Tensors, tuples, lists and dicts (values in insertion order), nested, depth first; ``None`` is dropped
    (exporters drop it too).

    Raises:
        ExportError: for a leaf that is neither a tensor nor None.
    """
    if isinstance(output, torch.Tensor):
        return [output]
    if output is None:
        return []
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in flatten_outputs(item)]
    raise ExportError(f"cannot compare a model output of type {type(output).__name__} with ONNX; "
                      "outputs must be tensors, or tuples / lists / dicts of tensors")


def _diff(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """(max abs diff, max abs diff / max |want|) of one output; inf for a shape or NaN mismatch."""
    if got.shape != want.shape:
        return float("inf"), float("inf")
    if want.size == 0:
        return 0.0, 0.0
    got, want = got.astype(np.float64), want.astype(np.float64)
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    if (nan_got != nan_want).any():
        return float("inf"), float("inf")
    both = nan_got & nan_want
    abs_diff = float(np.where(both, 0.0, np.abs(got - want)).max())
    scale = float(np.where(nan_want, 0.0, np.abs(want)).max())
    return abs_diff, abs_diff / scale if scale > 0 else abs_diff


def check_onnx(model: torch.nn.Module, example_inputs: Any, path: str | Path, threads: int = 1) -> OnnxCheck:
    """Run the ONNX file in ONNX Runtime and compare every output with ``model``'s (eval mode).

    Raises:
        ExportError: when the file and the model do not have the same number of outputs.
    """
    inputs = normalize_inputs(example_inputs)
    session = _session(path, threads)
    names = [o.name for o in session.get_outputs()]
    got = session.run(None, _feeds(session, inputs))
    with eval_mode(model), torch.no_grad():
        want = [t.detach().cpu().numpy() for t in flatten_outputs(model(*inputs))]
    if len(got) != len(want):
        raise ExportError(f"{path}: the ONNX graph has {len(got)} outputs {names} but the model returns "
                          f"{len(want)} tensors; is it the file exported from this model?")
    diffs = {name: _diff(np.asarray(g), w) for name, g, w in zip(names, got, want)}
    worst = max(diffs, key=lambda name: diffs[name][1], default="")
    max_abs = max((d[0] for d in diffs.values()), default=0.0)
    max_rel = max((d[1] for d in diffs.values()), default=0.0)
    return OnnxCheck(str(path), max_abs, max_rel, worst, diffs)


def ort_latency(path: str | Path, example_inputs: Any, runs: int = 30, warmup: int = 5,
                threads: int = 1) -> float:
    """Median wall time (seconds) of one ONNX Runtime run."""
    inputs = normalize_inputs(example_inputs)
    session = _session(path, threads)
    feeds = _feeds(session, inputs)
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t)
    return statistics.median(times)

"""Timing on a target: prepare a runnable per candidate, then time the candidates interleaved.

A *prepared call* is a zero-argument function that runs one inference of one candidate (an ONNX model in
ONNX Runtime or OpenVINO, or a torch module in eager mode) on inputs fixed at preparation.  Timing is
always comparative: :func:`time_interleaved` warms every candidate up, then runs rounds A B C A B C …,
so a slow drift of the machine (another process, thermal or frequency changes) hits every candidate
alike, and reports each candidate's median.

Runtimes (``Target.runtime``):

1. ``ort-cpu``: ONNX Runtime, CPU provider, ``intra_op_num_threads = threads``, sequential execution.
2. ``openvino-cpu``: OpenVINO (optional extra ``graphprune[latency]``, imported only here), with
   ``INFERENCE_NUM_THREADS`` and ``INFERENCE_PRECISION_HINT`` from the target.
3. ``torch-cpu``: eager PyTorch, ``torch.set_num_threads(threads)`` only while timing (restored after).
4. ``torch-cuda``: eager PyTorch on the current CUDA device, synchronised after every call.
"""
from __future__ import annotations

import copy
import math
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..files import write_bytes_atomic
from ..trace import normalize_inputs
from .model import Target

__all__ = ["PreparedCall", "prepare_onnx", "prepare_torch", "time_interleaved", "time_interleaved_stats", "fastest_session", "measure_ms", "with_batch",
           "runtime_version", "sized_rounds"]

PreparedCall = Callable[[], Any]

WARMUP = 2
REPEATS = 5
MIN_REPEATS = 5  # rounds a time limit never cuts below (a median of fewer is one outlier away from wrong)
MEASURE_SECONDS = 60.0  # NOTE: whole-model checks time at most about this long (warm-up aside); at batch 32 a
# ConvNeXt-T call is ~4 s at 1 thread, and 15 rounds x 3 sessions of dense + pruned took ~390 s per check
LONG_CALL_S = 0.5  # a first call longer than this is its own warm-up: a second one adds time, not warmth
SESSIONS = 3  # NOTE: an ORT session is now and then ~3x slower for its whole life (seen ~1 in 10 on a shared
# CPU, also for two sessions of one model side by side); whole models get this many sessions, keep the fastest
MIN_SAMPLE_S = 2e-4  # NOTE: calls shorter than this are looped so the timer's resolution does not dominate

_OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_TORCH_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def with_batch(inputs: Any, batch: int) -> tuple:
    """The inputs with their leading (batch) dim resized to ``batch`` by cycling the existing rows."""
    out = []
    for t in normalize_inputs(inputs):
        if t.dim() == 0 or t.shape[0] == batch:
            out.append(t)
        else:
            out.append(t[torch.arange(batch) % t.shape[0]])
    return tuple(out)


def runtime_version(target: Target) -> str:
    """Name and version of the runtime that times ``target`` (part of the cache's machine fingerprint)."""
    if target.runtime == "ort-cpu":
        import onnxruntime
        return f"onnxruntime-{onnxruntime.__version__}"
    if target.runtime == "openvino-cpu":
        return f"openvino-{_openvino().__version__}"
    if target.runtime == "torch-cuda":
        _require_cuda()
        return f"torch-{torch.__version__}-{torch.cuda.get_device_name()}"
    return f"torch-{torch.__version__}"


# ---- preparing one candidate --------------------------------------------------------------------
def prepare_onnx(model: Any, inputs: Sequence[np.ndarray], target: Target, workdir: str | Path | None = None
                 ) -> PreparedCall:
    """A call running ONNX ``model`` (a ``ModelProto`` or a path) once on ``inputs`` on ``target``.

    OpenVINO reads models from files: a ``ModelProto`` is written to ``workdir`` (a temporary folder the
    caller owns) first.
    """
    if target.runtime == "ort-cpu":
        return _prepare_ort(model, inputs, target)
    if target.runtime == "openvino-cpu":
        return _prepare_openvino(model, inputs, target, workdir)
    raise ValueError(f"prepare_onnx: target runtime {target.runtime!r} does not run ONNX; "
                     "use prepare_torch for torch-cpu / torch-cuda")


def ort_session_options(target: Target):
    """Session options timing ``target`` on ONNX Runtime: its threads, sequential execution, and no spinning.

    NOTE: interleaved timing keeps several sessions alive in one process; with more than one thread, each idle
    session's pool spins after its run and steals the cores of the next one.  Measured on 2 cores, 2 threads,
    ResNet-18 dense + 0.5 MACs interleaved 4 sessions: spinning on, dense 52-58 ms (17.4 ms alone) and pruned/dense
    0.53-0.60 between identical copies; off, 18.4-19.0 ms and 0.554-0.564.  A single session spinning runs ~8 %
    faster alone, which the ratios of the interleaved timing leave out.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = target.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def _prepare_ort(model: Any, inputs: Sequence[np.ndarray], target: Target) -> PreparedCall:
    import onnxruntime as ort

    if target.precision != "fp32":
        raise ValueError(f"ort-cpu times fp32 models only, the target asks for {target.precision!r}; "
                         "use openvino-cpu for bf16/fp16 on CPU")
    opts = ort_session_options(target)
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    feeds = {i.name: x for i, x in zip(session.get_inputs(), inputs)}
    return lambda: session.run(None, feeds)


def _openvino():
    try:
        import openvino
    except ImportError as exc:
        raise ImportError("the openvino-cpu latency target needs OpenVINO: pip install 'graphprune[latency]' "
                          "(or pip install openvino)") from exc
    return openvino


def _prepare_openvino(model: Any, inputs: Sequence[np.ndarray], target: Target, workdir) -> PreparedCall:
    ov = _openvino()
    if target.precision not in _OPENVINO_PRECISION:
        raise ValueError(f"openvino-cpu precision must be one of {sorted(_OPENVINO_PRECISION)}, "
                         f"got {target.precision!r}")
    if not isinstance(model, (str, Path)):
        if workdir is None:
            raise ValueError("prepare_onnx for openvino-cpu needs a workdir to write the ONNX model to")
        path = Path(workdir) / f"piece-{id(model)}-{time.monotonic_ns()}.onnx"
        write_bytes_atomic(path, model.SerializeToString())
        model = path
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": int(target.threads),
              "INFERENCE_PRECISION_HINT": _OPENVINO_PRECISION[target.precision],
              "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    compiled = core.compile_model(core.read_model(str(model)), "CPU", config)
    request = compiled.create_infer_request()
    feeds = list(inputs)
    return lambda: request.infer(feeds)


def _require_cuda() -> None:
    if not torch.cuda.is_available():
        raise RuntimeError("latency target torch-cuda: no CUDA device is available on this machine")


def prepare_torch(module: torch.nn.Module, inputs: Sequence[torch.Tensor], target: Target) -> PreparedCall:
    """A call running ``module`` (eval, no grad) once on ``inputs`` in eager PyTorch on ``target``."""
    if target.runtime not in ("torch-cpu", "torch-cuda"):
        raise ValueError(f"prepare_torch: target runtime {target.runtime!r} is not a torch runtime")
    if target.precision not in _TORCH_DTYPE:
        raise ValueError(f"torch precision must be one of {sorted(_TORCH_DTYPE)}, got {target.precision!r}")
    device = torch.device("cpu")
    if target.runtime == "torch-cuda":
        _require_cuda()
        device = torch.device("cuda")
    dtype = _TORCH_DTYPE[target.precision]
    module = copy.deepcopy(module).eval()  # NOTE: never change the caller's module (mode, dtype, device)
    module = module.to(device=device, dtype=dtype)
    args = tuple(t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device) for t in inputs)

    def call() -> Any:
        with torch.inference_mode():
            return module(*args)
    return call


# ---- timing --------------------------------------------------------------------------------------
@contextmanager
def _torch_threads(target: Target) -> Iterator[None]:
    """torch-cpu: ``threads`` intra-op threads while timing; the caller's setting is restored after."""
    if target.runtime != "torch-cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(target.threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _timed(call: PreparedCall, loops: int, sync: bool) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        call()
    if sync:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / loops


def sized_rounds(repeats: int, round_seconds: float, max_seconds: float | None) -> int:
    """Rounds to time: ``repeats``, cut so the rounds take about ``max_seconds`` (None: no limit), but never
    below ``MIN_REPEATS`` (nor above ``repeats``)."""
    if max_seconds is None or round_seconds <= 0:
        return repeats
    return max(min(repeats, MIN_REPEATS), min(repeats, int(max_seconds // round_seconds)))


def time_interleaved_stats(calls: Sequence[PreparedCall], target: Target, *, warmup: int = WARMUP,
                           repeats: int = REPEATS, max_seconds: float | None = None
                           ) -> tuple[list[float], list[float]]:
    """Median ms of each prepared call and its standard error, timed interleaved (A B C A B C …).

    The standard error of a median is about 1.2533 · σ / √n, σ estimated robustly (1.4826 · MAD).  With
    ``max_seconds``, fewer rounds are timed when ``repeats`` of them would take longer (``sized_rounds``: one
    round's time is estimated from the warm-up); calls longer than ``LONG_CALL_S`` get one warm-up call.
    """
    sync = target.runtime == "torch-cuda"
    with _torch_threads(target):
        first = [_timed(c, 1, sync) for c in calls]
        if max(first) < LONG_CALL_S:
            for _ in range(max(0, warmup - 1)):
                first = [_timed(c, 1, sync) for c in calls]
        loops = [max(1, math.ceil(MIN_SAMPLE_S / max(t, 1e-9))) for t in first]
        samples: list[list[float]] = [[] for _ in calls]
        for _ in range(sized_rounds(repeats, sum(n * t for n, t in zip(loops, first)), max_seconds)):
            for i, call in enumerate(calls):
                samples[i].append(_timed(call, loops[i], sync))
    medians = [1e3 * float(np.median(s)) for s in samples]
    errors = [1e3 * 1.2533 * 1.4826 * float(np.median(np.abs(np.array(s) - np.median(s)))) / math.sqrt(len(s))
              for s in samples]
    return medians, errors


def fastest_session(medians: Sequence[float], errors: Sequence[float], sessions: int
                    ) -> tuple[list[float], list[float]]:
    """Per candidate, the fastest of its ``sessions`` medians (calls laid out session-major: A1 B1 A2 B2)."""
    m = np.asarray(medians, dtype=np.float64).reshape(sessions, -1)
    e = np.asarray(errors, dtype=np.float64).reshape(sessions, -1)
    best = m.argmin(axis=0)
    cols = np.arange(m.shape[1])
    return m[best, cols].tolist(), e[best, cols].tolist()


def time_interleaved(calls: Sequence[PreparedCall], target: Target, *, warmup: int = WARMUP,
                     repeats: int = REPEATS) -> list[float]:
    """Median ms of each prepared call, timed in interleaved rounds (A B C A B C …) after a warm-up."""
    return time_interleaved_stats(calls, target, warmup=warmup, repeats=repeats)[0]


def measure_ms(modules: Sequence[torch.nn.Module], example_inputs: Any, target: Target, *,
               warmup: int = WARMUP, repeats: int = 3 * REPEATS, sessions: int = SESSIONS,
               max_seconds: float | None | str = "default") -> list[float]:
    """End-to-end median ms of each module on ``target``, interleaved; ONNX runtimes get an export of each.

    The example inputs' batch dim is replaced by ``target.batch``; each module runs in ``sessions``
    sessions and keeps its fastest median.  Up to ``repeats`` rounds, fewer (not under ``MIN_REPEATS``)
    when they would take more than ``max_seconds`` (long calls: big batches, big models at one thread);
    ``"default"``: ``MEASURE_SECONDS`` as it is at call time; None: all ``repeats``.
    """
    if max_seconds == "default":
        max_seconds = MEASURE_SECONDS
    inputs = with_batch(example_inputs, target.batch)
    with tempfile.TemporaryDirectory(prefix="graphprune-latency-") as tmp:
        if target.runtime in ("ort-cpu", "openvino-cpu"):
            from ..export.onnx import export_onnx
            arrays = [t.detach().cpu().numpy() for t in inputs]
            paths = [export_onnx(m, inputs, Path(tmp) / f"model{i}.onnx") for i, m in enumerate(modules)]
            calls = [prepare_onnx(p, arrays, target, tmp) for _ in range(sessions) for p in paths]
        else:
            calls = [prepare_torch(m, inputs, target) for _ in range(sessions) for m in modules]
        got = time_interleaved_stats(calls, target, warmup=warmup, repeats=repeats, max_seconds=max_seconds)
        return fastest_session(*got, sessions)[0]

"""What the ONNX Runtime stages of ``quantize`` share: the error they raise and how they open a CPU session.

A module of its own so that ``ort_ptq`` (int8 QDQ) and ``onnx_int4`` (Gemm -> MatMul, MatMulNBits), which call
each other's steps, import it rather than each other.
"""
from __future__ import annotations

from pathlib import Path


class QuantizeError(RuntimeError):
    """The exported ONNX graph does not line up with the model's layers, or quantisation failed."""


def cpu_session(path: str | Path, threads: int):
    """An ONNX Runtime CPU session on ``path`` with ``threads`` intra-op threads and quiet logging."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
    # NOTE: interleaved timing (ort_ptq.interleaved_ms) keeps several sessions alive: idle pools must not spin
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

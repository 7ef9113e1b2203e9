"""The int8 scheme, in numbers: the quantisation parameters ONNX Runtime computes, and fake quantisation.

Both halves of the stage use these functions: the fake-quant simulation (``fakequant.py``) to score candidates
in PyTorch, and the tests to state the tolerance of ORT vs simulation in quantisation steps.

The scheme is ONNX Runtime's static QDQ quantisation with the x86 settings its docs recommend for CPUs with
VNNI (``activation_type=QUInt8, weight_type=QInt8, reduce_range=False``):

* activations: per tensor, asymmetric uint8.  From the calibrated range, widened to hold 0
  (``rmin = min(rmin, 0)``, ``rmax = max(rmax, 0)``)::

      scale = (rmax - rmin) / 255          zero_point = round(0 - rmin / scale)      q in [0, 255]

* weights: per output channel, symmetric int8 in [-127, 127] (zero point 0)::

      scale_c = max |w_c| / 127

* bias: int32, zero point 0, ``scale_c = input_scale * weight_scale_c``.

On x86 CPUs **without** VNNI (AVX2 / AVX-512F only) ORT's u8 x s8 kernels add pairs of products in saturating
int16 (``VPMADDUBSW``): 255 · 127 · 2 overflows, and measured on such a host (AMD EPYC, AVX2) a pruned int8
ResNet ran 23 quantisation steps away from the simulation.  There the scheme uses ORT's ``reduce_range=True``
(its advice for such CPUs): weights in [-64, 64], ``scale_c = max |w_c| / 64``, which cannot saturate.
``REDUCE_RANGE`` is decided once from this machine's CPU flags (``GRAPHPRUNE_INT8_REDUCE_RANGE=0/1`` overrides it,
e.g. to build for another machine); the simulation and the ORT files always agree on it.

Quantise-dequantise is ``(clamp(round(x / scale) + zp, qmin, qmax) - zp) * scale`` with round-half-to-even,
as ONNX ``QuantizeLinear`` specifies.  A scale below float32's smallest normal number becomes 1 (ORT does so).
"""
from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["ActivationQParams", "activation_qparams", "fake_quant_activation", "fake_quant_weight",
           "fake_quant_bias", "weight_scales", "ACT_QMIN", "ACT_QMAX", "WEIGHT_QMAX", "REDUCE_RANGE"]

ACT_QMIN, ACT_QMAX = 0, 255


def _needs_reduce_range() -> bool:
    """True on an x86 CPU without VNNI (module docstring); ``GRAPHPRUNE_INT8_REDUCE_RANGE`` overrides."""
    forced = os.environ.get("GRAPHPRUNE_INT8_REDUCE_RANGE")
    if forced is not None:
        return forced.strip().lower() in ("1", "true", "yes")
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return False
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False  # NOTE: flags unknown (not Linux): the full range, as ORT's defaults assume
    return re.search(r"\b(avx512_vnni|avx_vnni|amx_int8)\b", cpuinfo) is None


REDUCE_RANGE = _needs_reduce_range()
WEIGHT_QMAX = 64 if REDUCE_RANGE else 127  # symmetric int8 weights: [-WEIGHT_QMAX, WEIGHT_QMAX]
BIAS_QMAX = 2 ** 31 - 1


@dataclass(frozen=True)
class ActivationQParams:
    """Per-tensor uint8 quantisation of one activation: ``x ≈ (q - zero_point) * scale``."""

    scale: float
    zero_point: int


def activation_qparams(rmin: float, rmax: float) -> ActivationQParams:
    """ORT's ``compute_scale_zp`` for an asymmetric uint8 tensor with calibrated range [rmin, rmax]."""
    lo, hi = min(float(rmin), 0.0), max(float(rmax), 0.0)
    scale = np.float64(hi - lo) / np.float64(ACT_QMAX - ACT_QMIN)
    if scale < np.finfo(np.float32).tiny:
        return ActivationQParams(1.0, 0)
    zero_point = int(np.clip(np.round(ACT_QMIN - lo / scale), ACT_QMIN, ACT_QMAX))
    return ActivationQParams(float(np.float32(scale)), zero_point)


def _qdq(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


def fake_quant_activation(x: torch.Tensor, qp: ActivationQParams) -> torch.Tensor:
    """Quantise-dequantise an activation with its per-tensor uint8 parameters."""
    scale = torch.tensor(qp.scale, dtype=x.dtype)
    return _qdq(x, scale, torch.tensor(float(qp.zero_point), dtype=x.dtype), ACT_QMIN, ACT_QMAX)


def _weight_qmax(bits: int) -> int:
    return WEIGHT_QMAX if bits == 8 else 2 ** (bits - 1) - 1


def weight_scales(weight: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Per-output-channel (axis 0) symmetric scales: ``max |w_c| / qmax`` (``WEIGHT_QMAX`` for 8 bits, else
    ``2^(bits-1) - 1``); 1 for an all-zero channel."""
    qmax = _weight_qmax(bits)
    absmax = weight.detach().abs().reshape(weight.shape[0], -1).amax(dim=1).to(torch.float64)
    scale = (absmax / qmax).to(torch.float32)
    return torch.where(scale < torch.finfo(torch.float32).tiny, torch.ones_like(scale), scale)


def fake_quant_weight(weight: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Per-output-channel symmetric quantise-dequantise (int8: [-WEIGHT_QMAX, WEIGHT_QMAX]); 0 bits gives zeros."""
    if bits == 0:
        return torch.zeros_like(weight)
    qmax = _weight_qmax(bits)
    scale = weight_scales(weight, bits).reshape(-1, *([1] * (weight.dim() - 1)))
    return _qdq(weight, scale, torch.zeros((), dtype=weight.dtype), -qmax, qmax)


def fake_quant_bias(bias: torch.Tensor, input_scale: float, weight_scale: torch.Tensor) -> torch.Tensor:
    """int32 bias with scale ``input_scale * weight_scale_c`` (zero point 0), dequantised."""
    scale = (torch.tensor(input_scale, dtype=torch.float32) * weight_scale).to(bias.dtype)
    return _qdq(bias, scale, torch.zeros((), dtype=bias.dtype), -BIAS_QMAX, BIAS_QMAX)

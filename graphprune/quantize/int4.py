"""The int4 scheme: ONNX Runtime's 4-bit weight-only blockwise quantisation of Linear weights (``MatMulNBits``).

Read by the fake-quant simulation (``fakequant.py``), the size / BOPs cost (``cost.py``) and the ORT export
(``onnx_int4.py``).  A Linear weight ``W`` (out N × in K) is split, per output row, into blocks of ``block_size``
consecutive input weights (the last block of a row may be short); each block gets its own fp32 scale (and, when
asymmetric, a 4-bit zero point).  The rounding mirrors MLAS's blockwise quantiser (``MlasQuantizeBlockwise``, the
kernel ``MatMulNBitsQuantizer`` calls), so the simulated weights equal the weights ORT dequantises, bit for bit
(``tests/quantize/test_int4.py`` holds them equal):

* symmetric: ``m`` = the block's max if ``|max| > |min|`` else its min; ``scale = -m / 8``; zero point 8;
* asymmetric: ``lo = min(min, 0)``, ``hi = max(max, 0)``; ``scale = (hi - lo) / 15``;
  ``zero_point = roundf(-lo / scale)`` clamped to [0, 15];
* ``q = clamp(roundf(w · (1 / scale) + zero_point), 0, 15)`` (``roundf``: ties away from zero; a zero scale
  gives reciprocal 0), and ``w ≈ (q - zero_point) · scale``.

Activations: ``accuracy_level`` 0 (the default; ORT's quantiser leaves the attribute unset) runs the MatMul in fp32
on dequantised blocks, so activations stay fp32.  ``accuracy_level`` 4 makes ``MatMulNBits`` quantise each row of
its input on the fly to int8, per block of ``block_size`` inputs, symmetric, ``scale = max |x| / 127``,
``q = round(x · (1 / scale))`` (ties to even), and multiplies in integers (VNNI) — :func:`fake_quant_input_int8_blocks` simulates it (measured equal to ORT within fp32
noise, ``tests/quantize/test_onnx_int4.py``).

On disk a layer holds ``N · ceil(K / block) · block / 2`` bytes of packed weights (the last block is padded),
``N · ceil(K / block)`` fp32 scales, and when asymmetric ``N · ceil(ceil(K / block) / 2)`` bytes of packed zero
points; its bias stays an fp32 ``Add``.  Conv layers have no int4 kernel in ORT: asking for one is an error.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..plan import PlanError

__all__ = ["Int4Scheme", "fake_quant_weight_int4", "fake_quant_input_int8_blocks", "int4_layer_bytes",
           "check_int4_layers", "INT4", "ACCURACY_LEVELS"]

INT4 = 4        # the bit-width a plan writes for an int4 layer
_QMAX = 15      # packed as unsigned nibbles
ACCURACY_LEVELS = (0, 4)  # 0: fp32 compute; 4: int8 activations inside MatMulNBits


@dataclass(frozen=True)
class Int4Scheme:
    """Settings of the int4 layers of one plan.

    Attributes:
        block_size: input weights per scale (a power of two >= 16, as ``MatMulNBits`` requires).
        symmetric: no zero points (zero point 8); asymmetric is ORT's default and fits skewed blocks better.
        accuracy_level: 0 (fp32 activations) or 4 (int8 activations per block, faster on VNNI CPUs).
    """

    block_size: int = 32
    symmetric: bool = False
    accuracy_level: int = 0

    def __post_init__(self) -> None:
        size = self.block_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 16 or size & (size - 1):
            raise PlanError(f"int4 block_size must be a power of two >= 16 (ONNX Runtime's MatMulNBits), got {size!r}")
        if not isinstance(self.symmetric, bool):
            raise PlanError(f"int4 symmetric must be true or false, got {self.symmetric!r}")
        if isinstance(self.accuracy_level, bool) or self.accuracy_level not in ACCURACY_LEVELS:
            raise PlanError(f"int4 accuracy_level must be one of {ACCURACY_LEVELS} (0: fp32 activations, 4: int8), "
                            f"got {self.accuracy_level!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, body: Any) -> "Int4Scheme":
        if not isinstance(body, dict) or set(body) - {"block_size", "symmetric", "accuracy_level"}:
            raise PlanError(f"bit plan 'int4' must be an object with 'block_size', 'symmetric' and "
                            f"'accuracy_level', got {body!r}")
        return cls(**body)


def _round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C's ``roundf`` (ties away from zero; ``torch.round`` rounds ties to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def _safe_reciprocal(scale: torch.Tensor) -> torch.Tensor:
    nonzero = scale != 0
    return torch.where(nonzero, 1.0 / torch.where(nonzero, scale, torch.ones_like(scale)), torch.zeros_like(scale))


def fake_quant_weight_int4(weight: torch.Tensor, scheme: Int4Scheme) -> torch.Tensor:
    """Blockwise int4 quantise-dequantise of a Linear weight (out, in), blocks along ``in`` (module docstring)."""
    if weight.dim() != 2:
        raise ValueError(f"int4 quantisation takes a Linear weight (out, in), got shape {tuple(weight.shape)}")
    n, k = weight.shape
    block = scheme.block_size
    blocks_per_row = math.ceil(k / block)
    # NOTE: zero padding changes neither rule: asymmetric ranges hold 0 anyway, and a symmetric block's
    # pick of max vs min is the same with or without zeros
    w = torch.zeros(n, blocks_per_row * block, dtype=torch.float32)
    w[:, :k] = weight.detach().to(torch.float32)
    w = w.reshape(n, blocks_per_row, block)
    hi, lo = w.amax(dim=2, keepdim=True), w.amin(dim=2, keepdim=True)
    if scheme.symmetric:
        scale = torch.where(hi.abs() > lo.abs(), hi, lo) / -8.0
        zero_point = torch.full_like(scale, 8.0)
    else:
        lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
        scale = (hi - lo) / _QMAX
        zero_point = torch.where(scale != 0, -lo / torch.where(scale != 0, scale, torch.ones_like(scale)), lo)
        zero_point = _round_half_away(zero_point).clamp(0.0, _QMAX)
    q = torch.clamp(_round_half_away(w * _safe_reciprocal(scale) + zero_point), 0.0, _QMAX)
    out = ((q - zero_point) * scale).reshape(n, -1)[:, :k]
    return out.to(weight.dtype)


def fake_quant_input_int8_blocks(x: torch.Tensor, block_size: int, columns: torch.Tensor | None = None
                                 ) -> torch.Tensor:
    """``MatMulNBits``' on-the-fly int8 quantisation of its input at accuracy_level 4 (module docstring), along the
    last axis; ``columns``: quantise only these inputs, blocked among themselves (the kept inputs of a 0-bit view)."""
    if columns is not None:
        out = x.clone()
        out[..., columns] = fake_quant_input_int8_blocks(x[..., columns], block_size)
        return out
    k = x.shape[-1]
    blocks = math.ceil(k / block_size)
    padded = torch.nn.functional.pad(x, (0, blocks * block_size - k)).reshape(*x.shape[:-1], blocks, block_size)
    amax = padded.abs().amax(dim=-1, keepdim=True)
    scale = amax / 127.0
    # NOTE: times 1/scale, not 127/amax: the two differ in the last bit, enough to flip ties on grid-valued inputs
    q = torch.round(padded * _safe_reciprocal(scale))
    return (q * scale).reshape(*x.shape[:-1], -1)[..., :k]


def int4_layer_bytes(n_out: float, n_in: float, scheme: Int4Scheme) -> float:
    """Bytes on disk of one int4 Linear weight: packed nibbles (padded blocks), fp32 scales, packed zero points."""
    blocks = math.ceil(n_in / scheme.block_size)
    packed = n_out * blocks * scheme.block_size / 2
    scales = 4 * n_out * blocks
    zero_points = 0 if scheme.symmetric else n_out * math.ceil(blocks / 2)
    return float(packed + scales + zero_points)


def check_int4_layers(layers: list, weight_bits: dict[str, int]) -> None:
    """Refuse int4 on anything but a Linear layer (``layers``: ``layers.QuantLayer`` of the model), by name."""
    kinds = {layer.name: layer.kind for layer in layers}
    for name, bits in weight_bits.items():
        if bits == INT4 and kinds.get(name, "linear") != "linear":
            raise PlanError(f"layer {name!r} is a {kinds[name]} layer and asks for int4 weights; ONNX Runtime has "
                            "4-bit weight-only kernels for MatMul (Linear) only — give it 8 or 32 bits")

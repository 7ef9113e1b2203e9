"""Stage 7 — quantisation after the rewrite, and the joint search over channels and bit-widths (AJPQ).

A pruned channel is a channel quantised to 0 bits; a layer's weights are fp32, int8 or, for Linear layers,
weight-only int4 (``bitplan.py``).

* ``scheme.py`` — the int8 scheme (ONNX Runtime's static QDQ, uint8 activations, per-channel int8 weights);
* ``fakequant.py`` — a PyTorch simulation of that scheme, to score candidates without exporting them;
* ``ort_ptq.py`` — the real thing: export, ``quantize_static``, an int8 ONNX file;
* ``int4.py`` / ``onnx_int4.py`` — int4 Linear weights: ORT's blockwise scheme, the Gemm → MatMul rewrite and
  ``MatMulNBits``;
* ``cost.py`` — size (bytes) and BOPs (MACs × weight bits × activation bits) of a candidate;
* ``joint.py`` — allocations and the evolutionary joint search, meeting a size / BOPs budget by construction;
* ``rl.py`` — the hierarchical RL controller (GCN PruningNet embeddings) over the same space;
* ``compress.py`` — ``graphprune.compress``: the stages end to end.
"""
from .bitplan import BitPlan
from .cost import QuantBudget, QuantCost
from .int4 import Int4Scheme
from .fakequant import fake_quant_model, zero_bit_model
from .compress import CompressReport, CompressResult, apply_bitplan, compress
from .ort_ptq import QuantizedOnnx, quantize_onnx

__all__ = ["compress", "apply_bitplan", "CompressResult", "CompressReport", "BitPlan", "QuantBudget", "QuantCost",
           "Int4Scheme", "fake_quant_model", "zero_bit_model", "quantize_onnx", "QuantizedOnnx"]

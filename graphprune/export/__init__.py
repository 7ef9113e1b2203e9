"""Stage 6: ONNX export, ONNX Runtime checks, latency; save/load of pruned models."""
from .onnx import ExportError, OnnxCheck, OnnxFile, check_onnx, export_onnx, flatten_outputs, ort_latency
from .saving import PRUNED_FORMAT, UntrustedFileError, load_pruned, plan_path, save_pruned

__all__ = ["export_onnx", "check_onnx", "ort_latency", "OnnxCheck", "ExportError", "save_pruned", "load_pruned",
           "UntrustedFileError", "PRUNED_FORMAT", "plan_path", "OnnxFile", "flatten_outputs"]

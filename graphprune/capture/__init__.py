"""Front ends other than ``torch.fx`` symbolic tracing: each returns a ``trace.TracedModel``."""
from .export_capture import capture_with_export

__all__ = ["capture_with_export"]

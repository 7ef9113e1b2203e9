"""Front ends: each turns a model into a ``trace.TracedModel`` (fx symbolic tracing lives in ``graphprune.trace``)."""
from .export_capture import capture_with_export
from .front_end import FRONT_ENDS, capture
from .record_capture import capture_by_running

__all__ = ["capture", "capture_with_export", "capture_by_running", "FRONT_ENDS"]

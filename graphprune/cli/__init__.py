"""Command line: ``graphprune prune MODEL --budget 0.5 --onnx out.onnx`` and ``graphprune inspect MODEL``.

MODEL is ``torchvision:<name>``, ``timm:<name>``, ``models:<name>``, ``checkpoint:<file.pt>`` or
``path/to/file.py:factory`` (see ``models.py``; ``graphprune --help`` explains each).

Modules: ``parser`` (options), ``models`` (MODEL specs, ``--weights``), ``outputs`` (output paths checked
before the job), ``commands`` (prune, inspect), ``errors`` (one-line errors and exit codes), ``app`` (main).
"""
from .app import main
from .models import load_model

__all__ = ["main", "load_model"]

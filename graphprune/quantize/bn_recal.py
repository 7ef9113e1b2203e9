"""BatchNorm recalibration: re-estimate running statistics of a pruned model on calibration data.

Pruning removes channels that fed the next layers, so each BatchNorm's stored mean / variance no longer
describes its input; a pruned model can sit at chance accuracy until fine-tuned only because of that.  Re-running
the statistics on a few calibration batches (forward passes only, no gradients) repairs much of it — and, before
quantisation, it also fixes the activation ranges the int8 calibration then reads.

Reads a model and calibration batches; returns a copy whose BatchNorm running statistics are the average over the
batches (``momentum=None``: a cumulative average, so the result does not depend on a momentum); every other
module stays in eval mode (dropout off) and no parameter changes.  A channel whose BatchNorm weight and bias are
zero (a 0-bit channel of ``zero_bit_model``) still outputs zero, so a pruned model and its zero-bit twin stay
the same model after recalibration.
"""
from __future__ import annotations

import copy
from typing import Iterable

import torch
import torch.nn as nn

from .fakequant import batch_inputs

__all__ = ["recalibrate_bn"]


def recalibrate_bn(model: nn.Module, calib_data: Iterable) -> nn.Module:
    """A copy of ``model`` with BatchNorm running statistics re-estimated on ``calib_data`` (module docstring).

    Raises:
        ValueError: ``calib_data`` is empty while the model has BatchNorm layers.
    """
    model = copy.deepcopy(model).eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return model
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    seen = 0
    with torch.no_grad():
        for batch in calib_data:
            model(*batch_inputs(batch))
            seen += 1
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        m.eval()
    if not seen:
        raise ValueError("recalibrate_bn needs at least one calibration batch in calib_data")
    return model

"""Element-wise ops: every tensor argument broadcasts against the output, axis by axis.

Rule: right-align shapes; an input axis equal in size to the output axis is the same channel set;
a size-1 (broadcast) axis couples to nothing.  This covers residual adds, SE gating ``x * s`` with
``s`` of shape (N, C, 1, 1), raw ``(1, C, 1, 1)`` parameters, activations and dropout.
Scalars are ignored.  Mask equivalence holds because a zeroed channel stays a separate channel.
"""
from __future__ import annotations

import operator

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register, register_method, register_module

_BINARY = [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow, operator.neg,
           operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.abs, operator.pos,
           torch.add, torch.sub, torch.subtract, torch.mul, torch.multiply, torch.div, torch.divide,
           torch.true_divide, torch.maximum, torch.minimum, torch.where, torch.pow, torch.addcmul,
           torch.lerp, torch.rsub]
_UNARY = [torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.exp, torch.abs, torch.neg,
          torch.sqrt, torch.rsqrt, torch.erf, torch.log, torch.sin, torch.cos, torch.clamp,
          torch.clip, torch.square, torch.reciprocal, torch.sign, torch.floor, torch.round,
          torch.nan_to_num, torch.dropout, torch.detach, torch.clone, torch.selu, torch.celu,
          F.relu, F.relu6, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.elu,
          F.selu, F.celu, F.leaky_relu, F.softplus, F.sigmoid, F.tanh, F.logsigmoid, F.softsign,
          F.tanhshrink, F.threshold, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
          F.alpha_dropout, F.feature_alpha_dropout, F.relu_, F.elu_, F.leaky_relu_, F.hardtanh_]
_METHODS = ["add", "sub", "mul", "div", "truediv", "add_", "sub_", "mul_", "div_", "maximum",
            "minimum", "pow", "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "abs",
            "neg", "sqrt", "rsqrt", "clamp", "clamp_", "clamp_min", "clamp_max", "clip", "square",
            "reciprocal", "contiguous", "clone", "detach", "float", "half", "double", "bfloat16",
            "to", "type_as", "cpu", "cuda", "requires_grad_", "masked_fill", "lerp", "addcmul",
            "__add__", "__mul__", "__sub__", "__truediv__", "__radd__", "__rmul__", "__rsub__",
            "__neg__", "erf", "log", "sign", "floor", "round", "nan_to_num", "where", "sin", "cos"]
_MODULES = [nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh,
            nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.LogSigmoid,
            nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
            nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity]


def _tensor_args(ctx) -> list[str]:
    values = [ctx.value_of(a) for a in ctx.node.args]
    values += [ctx.value_of(a) for a in ctx.node.kwargs.values()]
    return [v for v in values if v is not None]


@register(*_BINARY, *_UNARY)
@register_method(*_METHODS)
@register_module(*_MODULES)
def elementwise(ctx) -> None:
    """Broadcast every tensor argument against the output (module calls: the input)."""
    if ctx.out is None:
        return
    ctx.broadcast(ctx.out, _tensor_args(ctx))


try:  # torchvision wraps stochastic_depth for fx; in eval it is the identity, in train a row mask
    from torchvision.ops import stochastic_depth as _sd

    register(_sd)(elementwise)
except ImportError:  # pragma: no cover - torchvision is a dependency, but stay importable without it
    pass

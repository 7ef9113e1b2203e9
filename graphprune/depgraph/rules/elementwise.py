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

from .table import ZERO_PRESERVING, OpFacts, register, register_method, register_module

# NOTE: split by the facts passes read (``OpFacts``): zero-preserving ops let the masked reference skip a mask;
# a residual add is where a block can be removed.
_ADDS = [operator.add, operator.iadd, torch.add]
_SUBS = [operator.sub, torch.sub]
_ZERO_PRESERVING = [operator.mul, torch.mul, torch.relu, torch.tanh, F.relu, F.relu6, F.gelu, F.silu,
                    F.hardswish, F.leaky_relu, F.dropout]
_OTHER = [operator.truediv, operator.pow, operator.neg, operator.isub, operator.imul, operator.itruediv,
          operator.abs, operator.pos, torch.subtract, torch.multiply, torch.div, torch.divide,
          torch.true_divide, torch.maximum, torch.minimum, torch.where, torch.pow, torch.addcmul,
          torch.lerp, torch.rsub,
          torch.relu_, torch.sigmoid, torch.exp, torch.abs, torch.neg,
          torch.sqrt, torch.rsqrt, torch.erf, torch.log, torch.sin, torch.cos, torch.clamp,
          torch.clip, torch.square, torch.reciprocal, torch.sign, torch.floor, torch.round,
          torch.nan_to_num, torch.dropout, torch.detach, torch.clone, torch.selu, torch.celu,
          F.mish, F.hardsigmoid, F.hardtanh, F.elu,
          F.selu, F.celu, F.softplus, F.sigmoid, F.tanh, F.logsigmoid, F.softsign,
          F.tanhshrink, F.threshold, F.dropout1d, F.dropout2d, F.dropout3d,
          F.alpha_dropout, F.feature_alpha_dropout, F.relu_, F.elu_, F.leaky_relu_, F.hardtanh_,
          # comparisons and logic (a mask for masked_fill / where): still one output element per input element
          operator.gt, operator.lt, operator.ge, operator.le, operator.eq, operator.ne, operator.and_,
          operator.or_, operator.xor, operator.invert, operator.mod, operator.floordiv, torch.gt, torch.lt,
          torch.ge, torch.le, torch.eq, torch.ne, torch.logical_and, torch.logical_or, torch.logical_not,
          torch.logical_xor, torch.isnan, torch.isfinite, torch.masked_fill]
_ADDITIVE_METHODS = ["add", "sub"]
_ZERO_PRESERVING_METHODS = ["mul", "relu", "contiguous"]
_OTHER_METHODS = ["div", "truediv", "add_", "sub_", "mul_", "div_", "maximum",
                  "minimum", "pow", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "abs",
                  "neg", "sqrt", "rsqrt", "clamp", "clamp_", "clamp_min", "clamp_max", "clip", "square",
                  "reciprocal", "clone", "detach", "float", "half", "double", "bfloat16",
                  "to", "type_as", "cpu", "cuda", "requires_grad_", "masked_fill", "lerp", "addcmul",
                  "__add__", "__mul__", "__sub__", "__truediv__", "__radd__", "__rmul__", "__rsub__",
                  "__neg__", "erf", "log", "sign", "floor", "round", "nan_to_num", "where", "sin", "cos",
                  "masked_fill_", "gt", "lt", "ge", "le", "eq", "ne", "logical_not", "logical_and", "logical_or",
                  "bool", "isnan", "isfinite", "abs_", "neg_", "exp_", "clamp_min_", "clamp_max_"]
_ZERO_PRESERVING_MODULES = [nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Hardswish, nn.Tanh, nn.LeakyReLU, nn.ELU,
                            nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                            nn.FeatureAlphaDropout, nn.Identity]
_OTHER_MODULES = [nn.Mish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.SELU, nn.CELU, nn.Softplus,
                  nn.LogSigmoid, nn.Softsign, nn.Tanhshrink, nn.Threshold]
_RESIDUAL_ADD = OpFacts(zero_preserving="tensor_operands", combine="add")
_ADDITIVE = OpFacts(zero_preserving="tensor_operands")


def _tensor_args(ctx) -> list[str]:
    values = [ctx.value_of(a) for a in ctx.node.args]
    values += [ctx.value_of(a) for a in ctx.node.kwargs.values()]
    return [v for v in values if v is not None]


@register(*_ADDS, facts=_RESIDUAL_ADD)
@register(*_SUBS, facts=_ADDITIVE)
@register(*_ZERO_PRESERVING, facts=ZERO_PRESERVING)
@register(*_OTHER)
@register_method(*_ADDITIVE_METHODS, facts=_ADDITIVE)
@register_method(*_ZERO_PRESERVING_METHODS, facts=ZERO_PRESERVING)
@register_method(*_OTHER_METHODS)
@register_module(*_ZERO_PRESERVING_MODULES, facts=ZERO_PRESERVING)
@register_module(*_OTHER_MODULES)
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

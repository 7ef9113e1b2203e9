"""Op knowledge as tables: one ``OpRule`` per module type, function or tensor method.

A rule has two parts:

* ``couple(ctx)`` — analysis: declares how channels of the op's inputs, outputs and parameters correspond
  (see ``depgraph.context``).  Anything it leaves unmentioned is frozen.
* ``rewrite(rctx)`` — optional: after parameters are sliced, fixes what still encodes the old sizes
  (module attributes such as ``out_channels``, literal sizes in ``view``/``split`` arguments).

Supporting a new op is adding one row: ``@register(torch.some_fn)`` on a couple function.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.fx as fx

__all__ = ["OpRule", "register", "register_module", "register_method", "lookup_rule", "op_label", "REGISTRY"]


@dataclass(frozen=True)
class OpRule:
    name: str
    couple: Callable
    rewrite: Callable | None = None


@dataclass
class _Registry:
    modules: dict[type, OpRule]
    functions: dict[Any, OpRule]
    methods: dict[str, OpRule]


REGISTRY = _Registry({}, {}, {})


def register(*targets: Any, rewrite: Callable | None = None):
    """Register ``couple`` for call_function targets (callables)."""
    def deco(fn):
        for t in targets:
            REGISTRY.functions[t] = OpRule(fn.__name__, fn, rewrite)
        return fn
    return deco


def register_method(*names: str, rewrite: Callable | None = None):
    """Register ``couple`` for call_method targets (``Tensor`` method names)."""
    def deco(fn):
        for n in names:
            REGISTRY.methods[n] = OpRule(fn.__name__, fn, rewrite)
        return fn
    return deco


def register_module(*types: type, rewrite: Callable | None = None):
    """Register ``couple`` for leaf module types (subclasses too, unless they override ``forward``)."""
    def deco(fn):
        for t in types:
            REGISTRY.modules[t] = OpRule(fn.__name__, fn, rewrite)
        return fn
    return deco


def _module_rule(module: torch.nn.Module) -> OpRule | None:
    cls = type(module)
    if cls in REGISTRY.modules:
        return REGISTRY.modules[cls]
    for base in cls.__mro__[1:]:
        if base in REGISTRY.modules:
            # NOTE: a subclass that overrides forward may compute anything: fail closed.
            return REGISTRY.modules[base] if cls.forward is base.forward else None
    return None


def lookup_rule(node: fx.Node, modules: dict[str, torch.nn.Module]) -> OpRule | None:
    if node.op == "call_module":
        return _module_rule(modules[node.target])
    if node.op == "call_function":
        try:
            return REGISTRY.functions.get(node.target)
        except TypeError:  # unhashable target
            return None
    if node.op == "call_method":
        return REGISTRY.methods.get(node.target)
    return None


def op_label(node: fx.Node, modules: dict[str, torch.nn.Module]) -> str:
    if node.op == "call_module":
        return type(modules[node.target]).__name__
    if node.op == "call_function":
        mod = getattr(node.target, "__module__", "") or ""
        return f"{mod}.{getattr(node.target, '__name__', str(node.target))}".lstrip(".")
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return node.op


# Importing the rule modules fills REGISTRY.
from . import elementwise, layers, shape, indexing, pooling, attention  # noqa: E402,F401

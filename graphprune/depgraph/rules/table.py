"""The table of op rules (``REGISTRY``), the decorators that fill it and the lookups that read it.

The rule modules (``elementwise.py``, ``layers.py``, ...) import the decorators from here; the package's
``__init__`` imports them all, so importing ``graphprune.depgraph.rules`` fills the table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.fx as fx

__all__ = ["OpRule", "OpFacts", "NO_FACTS", "ZERO_PRESERVING", "op_facts", "register", "register_module", "register_method", "lookup_rule", "op_label", "REGISTRY"]


@dataclass(frozen=True)
class OpFacts:
    """What passes other than coupling need to know about an op.

    Attributes:
        zero_preserving: ``True`` if the output is 0 on every pruned element whenever the inputs (and the
            pruned parameter slices) are; ``"tensor_operands"`` if only when every operand is a tensor of the
            coupled set (``x + y``: a constant operand would shift the zeros) and no ``alpha`` is given.
        combine: ``"add"`` for a residual add (its operands can be removed as blocks), ``"concat"`` for a
            concatenation (its operands can be removed as branches), else ``None``.
        foldable_reader: a layer whose constant input columns can be folded into its bias (Linear, Conv).
    """

    zero_preserving: bool | str = False
    combine: str | None = None
    foldable_reader: bool = False


NO_FACTS = OpFacts()
ZERO_PRESERVING = OpFacts(zero_preserving=True)


@dataclass(frozen=True)
class OpRule:
    name: str
    couple: Callable
    rewrite: Callable | None = None
    facts: OpFacts = NO_FACTS

    def preserves_zeros(self, node: fx.Node) -> bool:
        """Whether ``node`` (an application of this op) maps zeroed pruned elements to zeros."""
        if self.facts.zero_preserving == "tensor_operands":
            return all(isinstance(a, fx.Node) for a in node.args) and not node.kwargs.get("alpha")
        return self.facts.zero_preserving is True


@dataclass
class _Registry:
    modules: dict[type, OpRule]
    functions: dict[Any, OpRule]
    methods: dict[str, OpRule]


REGISTRY = _Registry({}, {}, {})


def register(*targets: Any, rewrite: Callable | None = None, facts: OpFacts = NO_FACTS):
    """Register ``couple`` for call_function targets (callables)."""
    def deco(fn):
        for t in targets:
            REGISTRY.functions[t] = OpRule(fn.__name__, fn, rewrite, facts)
        return fn
    return deco


def register_method(*names: str, rewrite: Callable | None = None, facts: OpFacts = NO_FACTS):
    """Register ``couple`` for call_method targets (``Tensor`` method names)."""
    def deco(fn):
        for n in names:
            REGISTRY.methods[n] = OpRule(fn.__name__, fn, rewrite, facts)
        return fn
    return deco


def register_module(*types: type, rewrite: Callable | None = None, facts: OpFacts = NO_FACTS):
    """Register ``couple`` for leaf module types (subclasses too, unless they override ``forward``)."""
    def deco(fn):
        for t in types:
            REGISTRY.modules[t] = OpRule(fn.__name__, fn, rewrite, facts)
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


def lookup_rule(node: fx.Node, modules: dict[str, torch.nn.Module] | None) -> OpRule | None:
    if node.op == "call_module":
        module = (modules or {}).get(node.target)
        return _module_rule(module) if module is not None else None
    if node.op == "call_function":
        try:
            return REGISTRY.functions.get(node.target)
        except TypeError:  # unhashable target
            return None
    if node.op == "call_method":
        return REGISTRY.methods.get(node.target)
    return None


def op_facts(node: fx.Node, modules: dict[str, torch.nn.Module] | None = None) -> OpFacts:
    """The facts of ``node``'s op; an op without a rule has none (every fact false: fail closed).

    ``modules`` (name -> module) is needed for ``call_module`` nodes only."""
    rule = lookup_rule(node, modules)
    return rule.facts if rule is not None else NO_FACTS


def op_label(node: fx.Node, modules: dict[str, torch.nn.Module]) -> str:
    if node.op == "call_module":
        return type(modules[node.target]).__name__
    if node.op == "call_function":
        mod = getattr(node.target, "__module__", "") or ""
        return f"{mod}.{getattr(node.target, '__name__', str(node.target))}".lstrip(".")
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return node.op


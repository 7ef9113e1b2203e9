"""Op knowledge as tables: one ``OpRule`` per module type, function or tensor method.

A rule has two parts:

* ``couple(ctx)`` — analysis: declares how channels of the op's inputs, outputs and parameters correspond
  (see ``depgraph.rule_context``).  Anything it leaves unmentioned is frozen.
* ``rewrite(rctx)`` — optional: after parameters are sliced, fixes what still encodes the old sizes
  (module attributes such as ``out_channels``, literal sizes in ``view``/``split`` arguments).

and the facts other passes need about the op, as fields of the same row (``OpFacts``): whether it preserves
zeros channel-wise (the masked reference skips its mask), whether it is a residual add or a concat (branch and
block removal), whether its input constants fold into its bias (constant folding).

Supporting a new op is adding one row: ``@register(torch.some_fn, facts=...)`` on a couple function.
"""
from .table import (NO_FACTS, REGISTRY, ZERO_PRESERVING, OpFacts, OpRule, lookup_rule, op_facts, op_label,
                    register, register_method, register_module)

__all__ = ["OpRule", "OpFacts", "NO_FACTS", "ZERO_PRESERVING", "op_facts", "register", "register_module",
           "register_method", "lookup_rule", "op_label", "REGISTRY"]

# Importing the rule modules fills REGISTRY (each imports the decorators from .table, never from here:
# that would be an import cycle, tests/test_imports.py).
from . import elementwise, layers, size_reads, shape, indexing, pooling, attention, aten, aten_detection  # noqa: E402,F401

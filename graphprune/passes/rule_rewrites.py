"""Pass: let each op's rule fix what still encodes old sizes.

Reads: the op-rule table and the kept indices.  Rewrites: module attributes (``Conv2d.out_channels``,
``groups``, ``LayerNorm.normalized_shape``, attention head dims …) and node arguments (literal sizes
in ``view``/``reshape``/``expand``, slice bounds, ``split`` sizes, SDPA ``scale``).  Runs after
``slice_parameters``, so hooks may read the new parameter shapes.
"""
from __future__ import annotations

import numpy as np
import torch.fx as fx

from ..depgraph import DependencyGraph
from ..depgraph.rules import lookup_rule
from .rewrite_context import RewriteContext

__all__ = ["apply_rule_rewrites"]


def apply_rule_rewrites(gm: fx.GraphModule, graph: DependencyGraph, keep: np.ndarray) -> bool:
    modules = dict(gm.named_modules())
    changed = False
    for node in list(gm.graph.nodes):
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        rule = lookup_rule(node, modules)
        if rule is None or rule.rewrite is None:
            continue
        module = modules.get(node.target) if node.op == "call_module" else None
        rule.rewrite(RewriteContext(node, module, graph, keep))
        changed = True
    return changed

"""Pass: remove a residual block's mapping — the block becomes its shortcut.

Rules (``find_blocks`` is the analysis, ``remove_blocks`` the rewrite):

1. A *residual add* is a binary add (an op whose rule says ``combine="add"``: ``operator.add``/``iadd``,
   ``torch.add``), without ``alpha``, of two tensors of the same shape.
2. The *private part* of an operand is the operand and its ancestors that the other operand does not
   depend on.  The **mapping** is the operand whose private part calls parameterised modules or reads
   parameters; the **identity** (shortcut) is the other one, whose private part must have none
   (an identity, a parameter-free subsample/pad).  Both or neither parameterised: not a block.  The
   mapping's nodes must feed only the mapping and the add (else they would outlive its removal).
3. Rewrite: every use of the add reads the identity operand instead; nodes left without users (the
   mapping) are deleted, then submodules no node calls.  ``remove_blocks`` does it on a copy of a
   GraphModule; ``bypass_blocks`` is the same rewrite as a pass of the rewrite pipeline, for the blocks a
   strategy hands over (``Handover.blocks``).

Before / after::

    y = relu(add(shortcut(x), bn2(conv2(relu(bn1(conv1(x)))))))   ->   y = relu(shortcut(x))

The result equals the original with the mapping's output multiplied by 0 (``x + 0·F(x) = x``), which is
what GAL's block mask at 0 computes; ``tests/passes/test_remove_block.py`` holds it to that.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch.fx as fx

from ..depgraph.rules import op_facts

__all__ = ["Block", "find_blocks", "remove_blocks", "bypass_blocks", "ancestors", "is_parameterised"]


@dataclass(frozen=True)
class Block:
    """Residual add ``add`` whose argument ``mapping`` is the removable mapping; ``private`` its nodes."""

    add: str
    mapping: int
    private: tuple[str, ...]


def ancestors(node: fx.Node) -> set[fx.Node]:
    """``node`` and every node it (transitively) reads."""
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.all_input_nodes)
    return seen


def is_parameterised(node: fx.Node, modules: dict) -> bool:
    """Whether ``node`` holds weights: a module call with parameters, or a parameter/buffer read."""
    if node.op == "call_module":
        return any(True for _ in modules[node.target].parameters())
    return node.op == "get_attr"


def private_parts(operands: Sequence[fx.Node]) -> list[set[fx.Node]]:
    """Per operand, the nodes only that operand depends on (itself included)."""
    closures = [ancestors(o) for o in operands]
    return [c - set().union(*(closures[:i] + closures[i + 1:])) for i, c in enumerate(closures)]


def _is_residual_add(node: fx.Node) -> bool:
    if op_facts(node).combine != "add" or node.op != "call_function" or "alpha" in node.kwargs or len(node.args) != 2:
        return False
    a, b = node.args
    if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
        return False
    shapes = [getattr(x.meta.get("tensor_meta"), "shape", None) for x in (a, b)]
    return shapes[0] is not None and shapes[0] == shapes[1]


def find_blocks(gm: fx.GraphModule) -> list[Block]:
    """Every residual add with a removable mapping (rules 1–2), in graph order.

    Needs shapes in ``node.meta["tensor_meta"]`` (a traced ``graphprune`` model has them).
    """
    modules = dict(gm.named_modules())
    blocks = []
    for node in gm.graph.nodes:
        if not _is_residual_add(node):
            continue
        parts = private_parts(node.args)
        heavy = [any(is_parameterised(n, modules) for n in p) for p in parts]
        if heavy.count(True) != 1:
            continue
        mapping = heavy.index(True)
        part = parts[mapping]
        if any(u not in part and u is not node and u.users for n in part for u in n.users):
            continue  # the mapping's nodes feed something else too: removing the add would not delete them
        private = tuple(n.name for n in gm.graph.nodes if n in part)
        blocks.append(Block(node.name, mapping, private))
    return blocks


def remove_blocks(gm: fx.GraphModule, blocks: Iterable[Block | str]) -> fx.GraphModule:
    """A copy of ``gm`` with each block's mapping removed (rule 3).  Strings name adds of ``find_blocks``."""
    known = {b.add: b for b in find_blocks(gm)}
    wanted = [known.get(b) if isinstance(b, str) else b for b in blocks]
    missing = [b for b, w in zip(blocks, wanted) if w is None]
    if missing:
        raise ValueError(f"not residual blocks with a removable mapping: {missing}")
    out = copy.deepcopy(gm)
    _bypass(out, wanted)
    out.graph.lint()
    out.recompile()
    return out


def _bypass(gm: fx.GraphModule, blocks: Iterable[Block]) -> None:
    """Rule 3 in place: each add reads its identity operand; dead nodes and unused submodules go."""
    nodes = {n.name: n for n in gm.graph.nodes}
    for block in blocks:
        add = nodes[block.add]
        identity = add.args[1 - block.mapping]
        add.replace_all_uses_with(identity)
        gm.graph.erase_node(add)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()


def bypass_blocks(gm: fx.GraphModule, graph, handover) -> None:
    """Pipeline pass: remove the mappings of ``handover.blocks`` from ``gm`` (rule 3).

    Reads ``handover.blocks`` (named on the graph being rewritten); rewrites ``gm``'s graph.  A block that
    is not a residual add with a removable mapping in ``gm`` is refused with ``ValueError``."""
    if not handover.blocks:
        return
    known = {b.add for b in find_blocks(gm)}
    missing = [b.add for b in handover.blocks if b.add not in known]
    if missing:
        raise ValueError(f"not residual blocks with a removable mapping: {missing}")
    _bypass(gm, handover.blocks)

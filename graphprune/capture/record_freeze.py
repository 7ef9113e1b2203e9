"""Rule 3 of ``record_capture`` (its docstring): what a recorded run cannot prove for another input.

Reads a recorded graph (and the probe's recording); returns ``node -> reason`` for every node whose tensors must be
frozen: ops with data-dependent output sizes, everything after a value is read into Python within the same module
call, and whatever ran differently on the probe input.
"""
from __future__ import annotations

import difflib
from typing import Any

import torch
import torch.fx as fx
from torch.utils import _pytree as pytree

_SIZE_DIFFERS = "its output size differs on a probe input of other content (a data-dependent size)"
_SCOPE = "nn_module_stack"  # node.meta key; a dict "<name>@<call>" -> (qualified name, class), outermost first
# ops whose output size depends on tensor values but which carry no ATen tag saying so
_UNTAGGED_DYNAMIC = {torch.ops.aten.where.default, torch.ops.aten.nonzero_numpy.default,
                     torch.ops.aten.repeat_interleave.self_Tensor}
_DATA_READS = {torch.ops.aten.item.default, torch.ops.aten._local_scalar_dense.default,
               torch.ops.aten.is_nonzero.default, torch.ops.aten.equal.default}


def _scope(node: fx.Node) -> tuple[str, ...]:
    return tuple((node.meta.get(_SCOPE) or {}).keys())


def _scope_name(node: fx.Node) -> str:
    scope = list((node.meta.get(_SCOPE) or {}).values())
    return f"'{scope[-1][0] or '<root>'}' ({scope[-1][1]})" if scope else "'<root>'"


def _has_dynamic_size(node: fx.Node) -> bool:
    """Rule 3a: the op's output size depends on tensor values."""
    target = node.target
    if not isinstance(target, torch._ops.OpOverload):
        return False
    if target is torch.ops.aten.index.Tensor:
        indices = node.args[1] if len(node.args) > 1 else ()
        return any(getattr(i, "meta", {}).get("val") is not None and i.meta["val"].dtype in (torch.bool, torch.uint8)
                   for i in indices if i is not None)
    if target in _UNTAGGED_DYNAMIC or (target.namespace == "torchvision" and target._opname == "nms"):
        return True
    return torch.Tag.dynamic_output_shape in target.tags or (
        torch.Tag.data_dependent_output in target.tags and target not in _DATA_READS)


def _input_derived(gm: fx.GraphModule) -> set[fx.Node]:
    """Nodes computed (transitively) from a model input, not only from parameters and constants."""
    derived: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder" or any(a in derived for a in node.all_input_nodes):
            derived.add(node)
    return derived


def _freeze_after_reads(gm: fx.GraphModule, frozen: dict[str, str]) -> None:
    """Rule 3b: after a data-derived value is read into Python, the rest of that module call is frozen."""
    derived = _input_derived(gm)
    nodes = list(gm.graph.nodes)
    for i, read in enumerate(nodes):
        if read.target not in _DATA_READS or not any(a in derived for a in read.all_input_nodes):
            continue
        scope = _scope(read)
        why = (f"runs after '{read.name}' read a tensor value into Python in module {_scope_name(read)}: "
               "control flow there may depend on the input, and a recording sees one branch")
        for later in nodes[i + 1:]:
            if later.op == "call_function" and _scope(later)[:len(scope)] == scope:
                frozen.setdefault(later.name, why)


def _key(node: fx.Node) -> tuple:
    names = tuple(name for name, _ in (node.meta.get(_SCOPE) or {}).values())
    return str(node.target), names


def _sizes(value: Any) -> Any:
    return pytree.tree_map_only(torch.Tensor, lambda t: tuple(t.shape), value)


def _literals(node: fx.Node) -> list:
    """The non-tensor arguments of a node (node arguments stripped)."""
    flat = pytree.tree_leaves((node.args, node.kwargs))
    return [a for a in flat if not isinstance(a, fx.Node)]


def _compare_with_probe(gm: fx.GraphModule, probe: fx.GraphModule, frozen: dict[str, str]) -> None:
    """Rule 3c: align two recordings op by op; freeze what ran once, or ran with other sizes or arguments."""
    ops = [n for n in gm.graph.nodes if n.op == "call_function"]
    probe_ops = [n for n in probe.graph.nodes if n.op == "call_function"]
    matcher = difflib.SequenceMatcher(None, [_key(n) for n in ops], [_key(n) for n in probe_ops],
                                      autojunk=False)
    matched: dict[fx.Node, fx.Node] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            matched[ops[block.a + k]] = probe_ops[block.b + k]
    for node in ops:
        other = matched.get(node)
        if other is None:
            frozen.setdefault(node.name, f"ran on the example input but not on a probe input of other content: "
                                         f"control flow in module {_scope_name(node)} depends on the data")
        elif _literals(node) != _literals(other):
            frozen.setdefault(node.name, f"its arguments {_literals(node)} differ on a probe input of other "
                                         f"content ({_literals(other)}): they are read from the data")
        elif _sizes(node.meta.get("val")) != _sizes(other.meta.get("val")) and all(
                _sizes(a.meta.get("val")) == _sizes(b.meta.get("val"))
                for a, b in zip(node.all_input_nodes, other.all_input_nodes)):
            frozen.setdefault(node.name, _SIZE_DIFFERS)


def data_dependent_nodes(gm: fx.GraphModule, probe: fx.GraphModule | None = None) -> dict[str, str]:
    """Node name -> why it is frozen, by rules 3a-3c of the module docstring (raw recordings, same model)."""
    frozen: dict[str, str] = {}
    for node in gm.graph.nodes:
        if node.op == "call_function" and _has_dynamic_size(node):
            frozen[node.name] = (f"{node.target} in module {_scope_name(node)} returns a data-dependent number "
                                 "of elements")
    _freeze_after_reads(gm, frozen)
    if probe is not None:
        _compare_with_probe(gm, probe, frozen)
    return frozen


def probe_inputs(inputs: tuple) -> tuple:
    """Inputs of the same shapes and other content: each tensor flipped along its last axis."""
    return tuple(x.flip(-1) if isinstance(x, torch.Tensor) and x.ndim else x for x in inputs)

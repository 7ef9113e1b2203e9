"""Pass: the *masked reference* — the original model with pruned channels zeroed, not removed.

Reads: the dependency graph and a keep mask.  Rewrites a copy of the traced graph: after every node
whose output has pruned elements, a ``mul`` by a 0/1 mask; every parameter's pruned slices are zeroed
too (this reaches inside opaque modules such as ``MultiheadAttention``).  The shapes stay dense.

This is the correctness oracle of the rewrite (pruned output == masked output), and a cheap way to
evaluate many candidate plans without rewriting each.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.fx as fx

from ..depgraph import DependencyGraph, Dim

__all__ = ["masked_model"]


def _axis_mask(graph: DependencyGraph, value: str, axis: int, keep: np.ndarray) -> torch.Tensor | None:
    d = Dim(value, axis)
    if d not in graph.dim_class:
        return None
    size = graph.shapes[value][axis]
    kept = graph.kept_indices(d, keep)
    if len(kept) == size:
        return None
    mask = torch.zeros(size)
    mask[torch.as_tensor(kept)] = 1.0
    shape = [1] * len(graph.shapes[value])
    shape[axis] = size
    return mask.reshape(shape)


def _zero_parameters(gm: fx.GraphModule, graph: DependencyGraph, keep: np.ndarray) -> None:
    with torch.no_grad():
        for name, tensor in list(gm.named_parameters(remove_duplicate=False)) + \
                list(gm.named_buffers(remove_duplicate=False)):
            if not tensor.is_floating_point() or name.endswith("running_var"):
                continue
            key = graph.param_alias.get(f"@{name}", f"@{name}")
            for axis in range(tensor.ndim):
                m = _axis_mask(graph, key, axis, keep)
                if m is not None:
                    tensor.mul_(m.to(tensor.dtype))


def masked_layer_norm(x: torch.Tensor, mask: torch.Tensor, n_axes: int, weight, bias, eps: float):
    """LayerNorm over the last ``n_axes`` axes counting only elements where ``mask`` is 1."""
    axes = tuple(range(x.ndim - n_axes, x.ndim))
    count = mask.expand_as(x).sum(dim=axes, keepdim=True)
    mean = (x * mask).sum(dim=axes, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(dim=axes, keepdim=True) / count
    y = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y * mask


_LAYER_NORM_FUNCTIONS = (torch.nn.functional.layer_norm, torch.ops.aten.layer_norm.default)  # fx, export


def _layer_norm_spec(node: fx.Node, modules: dict) -> tuple | None:
    """(n_axes, weight, bias, eps) of a LayerNorm module call or ``F.layer_norm`` call, else None."""
    if node.op == "call_module" and isinstance(modules.get(node.target), torch.nn.LayerNorm):
        m = modules[node.target]
        return len(m.normalized_shape), m.weight, m.bias, m.eps
    if node.op == "call_function" and node.target in _LAYER_NORM_FUNCTIONS:
        arg = lambda i, name, default=None: node.args[i] if len(node.args) > i else node.kwargs.get(name, default)
        return len(arg(1, "normalized_shape")), arg(2, "weight"), arg(3, "bias"), arg(4, "eps", 1e-5)
    return None


def _mask_layer_norms(gm: fx.GraphModule, graph: DependencyGraph, keep: np.ndarray, count: int) -> int:
    """NOTE: a pruned LayerNorm normalises over fewer channels; its masked twin must do the same."""
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        spec = _layer_norm_spec(node, modules)
        if spec is None or node.name not in graph.shapes:
            continue
        k, w, b, eps = spec
        shape = graph.shapes[node.name]
        full = torch.ones(shape[-k:])
        for i in range(k):
            axis_mask = _axis_mask(graph, node.name, len(shape) - k + i, keep)
            if axis_mask is not None:
                full = full * axis_mask.reshape([-1 if j == i else 1 for j in range(k)])
        if bool(full.all()):
            continue
        buf = f"_graphprune_lnmask_{count}"
        count += 1
        gm.register_buffer(buf, full.to(_mask_dtype(node)))
        with gm.graph.inserting_before(node):
            getter = gm.graph.get_attr(buf)
            if node.op == "call_module":
                w = gm.graph.get_attr(f"{node.target}.weight") if w is not None else None
                b = gm.graph.get_attr(f"{node.target}.bias") if b is not None else None
            new = gm.graph.call_function(masked_layer_norm, (node.args[0], getter, k, w, b, eps))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    return count


def _mask_dtype(node: fx.Node) -> torch.dtype:
    """The node's dtype (0 and 1 are exact in each): a float32 mask would promote a float16 / bfloat16 value
    and turn a bool one (a comparison feeding ``masked_fill``) into floats; float32 when not recorded."""
    dtype = getattr(node.meta.get("tensor_meta"), "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def masked_model(graph: DependencyGraph, keep: np.ndarray) -> fx.GraphModule:
    gm = copy.deepcopy(graph.traced.gm)
    _zero_parameters(gm, graph, keep)
    count = _mask_layer_norms(gm, graph, keep, 0)
    for node in list(gm.graph.nodes):
        if node.op in ("placeholder", "output") or node.name not in graph.shapes:
            continue
        current = node
        for axis in range(len(graph.shapes[node.name])):
            mask = _axis_mask(graph, node.name, axis, keep)
            if mask is None:
                continue
            buf = f"_graphprune_mask_{count}"
            count += 1
            gm.register_buffer(buf, mask.to(_mask_dtype(node)))
            with gm.graph.inserting_after(current):
                getter = gm.graph.get_attr(buf)
            with gm.graph.inserting_after(getter):
                product = gm.graph.call_function(torch.mul, (current, getter))
            current.replace_all_uses_with(product, delete_user_cb=lambda u, p=product: u is not p)
            current = product
    gm.graph.lint()
    gm.recompile()
    return gm

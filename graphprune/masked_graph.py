"""Masked copy of a traced model: one graph, many keep masks (no rewrite per candidate).

1. **build once** (``MaskedGraph``): copy the traced graph and insert ``x * mask_k`` after values with
   a prunable channel dim (all masks 1 at first); LayerNorms over prunable dims become the masked
   LayerNorm of ``passes.masked_reference`` (same statistics as the pruned op).  Keep a copy of every parameter
   with a prunable dim.  ``sites="all"`` masks every such value, like ``passes.masked_model``;
   ``sites="needed"`` (the default) skips values produced by *zero-preserving* ops (the op rules' ``OpFacts``):
   with pruned parameter slices zeroed (conv rows and bias, BN γ, β and running mean), an op whose
   output is 0 wherever its inputs are 0 keeps the invariant "every pruned element is exactly 0" that
   the full masking enforces, so both give the same numbers — and a plain CNN runs with no extra op;
2. **swap per candidate** (``MaskedGraph.set_keep``): mask_k = [keep; 1][unit_of_element_k] for every
   site — one gather per site — and parameters = original ⊙ mask (this reaches inside opaque modules).

The same sites double as *gates* for gradient-based importance: ``MaskedGraph.gated`` replaces the
masks by ``g[:, unit]`` for a per-sample gate matrix ``g`` (ones) so that ``∂L_n/∂g[n, u]`` is the
derivative of sample n's loss along the removal of unit u (used by ``importance.group_fisher``).
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.fx as fx

from .depgraph import DependencyGraph, Dim
from .depgraph.rules import lookup_rule
from .passes.masked_reference import _layer_norm_spec, masked_layer_norm

__all__ = ["MaskedGraph", "preserves_zeros"]


def preserves_zeros(node: fx.Node, modules: dict[str, torch.nn.Module]) -> bool:
    """True if ``node``'s output is 0 on every pruned element whenever its inputs and parameters are
    (the ``zero_preserving`` fact of its op rule; an op without a rule is assumed not to)."""
    if node.op == "get_attr":
        return True
    rule = lookup_rule(node, modules)
    return rule is not None and rule.preserves_zeros(node)


@dataclass
class _Site:
    """One mask multiplication: the buffer it reads and, per element, the unit (``n_units`` = always kept)."""

    buffer: str
    index: torch.Tensor
    shape: list[int]
    axis: int
    batch_major: bool


def _unit_index(graph: DependencyGraph, dim: Dim) -> np.ndarray | None:
    """Per element of ``dim``, its unit, or ``n_units`` where not prunable; None if nothing is prunable."""
    c = graph.dim_class.get(dim)
    if c is None:
        return None
    lo = graph.class_offset[c]
    units = graph.element_unit[lo:lo + graph.class_size[c]]
    if not (units >= 0).any():
        return None
    return np.where(units < 0, graph.n_units, units)


class MaskedGraph:
    """The traced model with swappable channel masks (see module docstring).

    Args:
        graph: the dependency graph; its traced module is copied, never modified.
        sites: ``"needed"`` (mask only outputs of ops that do not preserve zeros) or ``"all"`` (every
            value; required for gradient gates, ``gated``).
    """

    def __init__(self, graph: DependencyGraph, sites: str = "needed"):
        if sites not in ("needed", "all"):
            raise ValueError(f"sites must be 'needed' or 'all', got {sites!r}")
        self.graph = graph
        self.all_sites = sites == "all"
        self.gm = copy.deepcopy(graph.traced.gm)
        self.sites: list[_Site] = []
        self._ln_sites: list[tuple[str, list[tuple[int, torch.Tensor]]]] = []
        self._param_sites: list[tuple[torch.Tensor, torch.Tensor, list[_Site]]] = []
        self._batch = int(graph.traced.example_inputs[0].shape[0]) if graph.traced.example_inputs else 1
        self._mask_parameters()
        self._mask_layer_norms()
        self._mask_values()
        self.gm.graph.lint()
        self.gm.recompile()
        self._state = {k: v.clone() for k, v in self.gm.state_dict().items()}
        self.keep = graph.full_keep()

    # ---- build ------------------------------------------------------------------------------------
    def _site(self, value: str, axis: int, shape: tuple[int, ...]) -> _Site | None:
        units = _unit_index(self.graph, Dim(value, axis))
        if units is None:
            return None
        name = f"_graphprune_site_{len(self.sites)}"
        view = [1] * len(shape)
        view[axis] = shape[axis]
        self.gm.register_buffer(name, torch.ones(view))
        batch_major = axis > 0 and len(shape) > 0 and shape[0] == self._batch
        site = _Site(name, torch.as_tensor(units), view, axis, batch_major)
        self.sites.append(site)
        return site

    def _mask_parameters(self) -> None:
        for name, tensor in list(self.gm.named_parameters(remove_duplicate=False)) + \
                list(self.gm.named_buffers(remove_duplicate=False)):
            if not tensor.is_floating_point() or name.endswith("running_var"):
                continue
            key = self.graph.param_alias.get(f"@{name}", f"@{name}")
            idx = [_unit_index(self.graph, Dim(key, a)) for a in range(tensor.ndim)]
            axes = [(a, torch.as_tensor(i)) for a, i in enumerate(idx) if i is not None]
            if axes:
                self._param_sites.append((tensor, tensor.detach().clone(), axes))

    def _mask_layer_norms(self) -> None:
        """NOTE: a LayerNorm over pruned channels normalises over fewer of them: masked LayerNorm."""
        modules = dict(self.gm.named_modules())
        for node in list(self.gm.graph.nodes):
            spec = _layer_norm_spec(node, modules)
            if spec is None or node.name not in self.graph.shapes:
                continue
            k, w, b, eps = spec
            shape = self.graph.shapes[node.name]
            axes = [_unit_index(self.graph, Dim(node.name, len(shape) - k + i)) for i in range(k)]
            if all(a is None for a in axes):
                continue
            name = f"_graphprune_lnmask_{len(self._ln_sites)}"
            self.gm.register_buffer(name, torch.ones(shape[-k:]))
            self._ln_sites.append((name, [(i, torch.as_tensor(a)) for i, a in enumerate(axes) if a is not None]))
            with self.gm.graph.inserting_before(node):
                getter = self.gm.graph.get_attr(name)
                if node.op == "call_module":
                    w = self.gm.graph.get_attr(f"{node.target}.weight") if w is not None else None
                    b = self.gm.graph.get_attr(f"{node.target}.bias") if b is not None else None
                new = self.gm.graph.call_function(masked_layer_norm, (node.args[0], getter, k, w, b, eps))
            node.replace_all_uses_with(new)
            new.name, new.meta = node.name, node.meta
            self.gm.graph.erase_node(node)

    def _mask_values(self) -> None:
        shapes = self.graph.shapes
        modules = dict(self.gm.named_modules())
        for node in list(self.gm.graph.nodes):
            if node.op in ("placeholder", "output") or node.name not in shapes:
                continue
            if not self.all_sites and preserves_zeros(node, modules):
                continue
            current = node
            for axis in range(len(shapes[node.name])):
                site = self._site(node.name, axis, shapes[node.name])
                if site is None:
                    continue
                with self.gm.graph.inserting_after(current):
                    getter = self.gm.graph.get_attr(site.buffer)
                with self.gm.graph.inserting_after(getter):
                    product = self.gm.graph.call_function(torch.mul, (current, getter))
                current.replace_all_uses_with(product, delete_user_cb=lambda u, p=product: u is not p)
                current = product

    # ---- per candidate ----------------------------------------------------------------------------
    def _unit_vector(self, keep: np.ndarray) -> torch.Tensor:
        return torch.cat([torch.as_tensor(keep, dtype=torch.float32), torch.ones(1)])

    @torch.no_grad()
    def set_keep(self, keep: np.ndarray) -> fx.GraphModule:
        """Mask the copy to ``keep`` and restore every other tensor (BN statistics included); return it."""
        self.gm.load_state_dict(self._state, strict=False)
        self.set_masks(keep)
        for (tensor, original, _), m in zip(self._param_sites, self.param_masks(keep)):
            tensor.copy_(original * m)
        return self.gm

    @torch.no_grad()
    def set_masks(self, keep: np.ndarray) -> None:
        """Set the value and LayerNorm masks to ``keep``; parameters untouched (training through masks)."""
        v = self._unit_vector(keep)
        buffers = self.gm._buffers
        for s in self.sites:
            buffers[s.buffer] = v[s.index].reshape(s.shape)
        for name, axes in self._ln_sites:
            full = torch.ones_like(buffers[name])
            for i, idx in axes:
                full = full * v[idx].reshape([-1 if j == i else 1 for j in range(full.ndim)])
            buffers[name] = full
        self.keep = np.asarray(keep, dtype=bool).copy()

    def param_masks(self, keep: np.ndarray) -> list[torch.Tensor]:
        """Per tensor of ``param_tensors``, its 0/1 mask (broadcastable) for ``keep``."""
        v = self._unit_vector(keep)
        masks = []
        for tensor, _, axes in self._param_sites:
            m = torch.ones(())
            for a, idx in axes:
                m = m * v[idx].reshape([-1 if j == a else 1 for j in range(tensor.ndim)])
            masks.append(m)
        return masks

    @property
    def param_tensors(self) -> list[torch.Tensor]:
        """The copy's parameters and buffers with a prunable dim (zeroed on pruned slices by ``set_keep``)."""
        return [tensor for tensor, _, _ in self._param_sites]

    @contextlib.contextmanager
    def gated(self, gates: list[torch.Tensor]) -> Iterator[fx.GraphModule]:
        """Within the block, site k's mask is ``gates[k][n, unit]`` (each gate: (batch, n_units + 1)).

        One gate per site, so a gradient tells sites apart (sum them for the shared gate of the unit).
        Sites whose leading axis is not the batch read the batch-mean gate row (their per-sample
        gradient then spreads evenly over the batch).
        """
        buffers = self.gm._buffers
        saved = {s.buffer: buffers[s.buffer] for s in self.sites}
        try:
            for s, gate in zip(self.sites, gates, strict=True):
                if s.batch_major:
                    buffers[s.buffer] = gate[:, s.index].reshape([gate.shape[0]] + s.shape[1:])
                else:
                    buffers[s.buffer] = gate.mean(0)[s.index].reshape(s.shape)
            yield self.gm
        finally:
            buffers.update(saved)


# ---- BatchNorm recalibration ----------------------------------------------------------------------

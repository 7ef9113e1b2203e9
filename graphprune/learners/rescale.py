"""The γ-W rescaling of Ye et al. (2018), applied per group of the dependency graph.

For a channel produced by ``BN → φ`` and read by a layer ``W``, with φ positively homogeneous
(``φ(αz) = αφ(z)`` for α > 0: ReLU, max/avg pooling, identity)::

    W · φ(γ x̂ + β)  =  (W / α) · φ(αγ x̂ + αβ)

so scaling the BN's γ, β by α and the readers' input columns by 1/α changes no output, but an L1
penalty on γ now acts on αγ.  Per group: every BN channel of the group's units is scaled, and every
reader column (gate sites of :mod:`.gates`: a conv with ``groups == 1`` or a linear reading the channel
axis) is divided.  The group is kept only if a forward pass in eval mode gives the same reader outputs (to
1e-5 of their scale); otherwise it is restored exactly and the reason recorded — e.g. ReLU6 is not
homogeneous (the check also tries α = 1024, which saturates it), a depthwise reader is not a column of one layer, a frozen path joins a residual sum.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from .gates import GatedModel

__all__ = ["Rescaling", "rescale_groups", "undo_rescale"]

# NOTE: the check also tries an extreme α (a power of 2, so the scaling itself is exact): a clipped
# activation (ReLU6) the probe does not reach at the requested α saturates there.
PROBE_ALPHA = 1024.0
TOLERANCE = 1e-5  # of each reader output's scale


@dataclass
class Rescaling:
    """What was scaled: per BN module a per-channel factor; per reader module the divided columns."""

    alpha: float
    bn_factor: dict[str, torch.Tensor] = field(default_factory=dict)
    columns: list[tuple[str, torch.Tensor]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _readers(gated: GatedModel, units: set[int], modules: dict) -> list[tuple[str, torch.Tensor]] | str:
    """(module, input columns) reading ``units``, or the reason one reader is not a plain column read."""
    nodes = {n.name: n for n in gated.graph.traced.gm.graph.nodes}
    out = []
    for site in gated.sites:
        index = np.asarray(site.index)
        cols = np.nonzero(np.isin(index, list(units)))[0]
        if len(cols) == 0:
            continue
        node = nodes[site.node]
        m = modules.get(node.target) if node.op == "call_module" else None
        plain = isinstance(m, nn.Linear) or (isinstance(m, nn.modules.conv._ConvNd) and m.groups == 1)
        if not plain or site.axis != 1:
            return f"reader {site.node} is not a conv/linear reading the channel axis"
        out.append((node.target, torch.as_tensor(cols)))
    return out


@torch.no_grad()
def _scale(modules: dict, bns: dict[str, torch.Tensor], cols: list, alpha: float, inverse: bool) -> None:
    """BN channels in ``bns`` (name -> bool mask) times α (1/α if ``inverse``); reader columns the opposite."""
    a = 1.0 / alpha if inverse else alpha
    for name, mask in bns.items():
        factor = torch.where(mask, a, 1.0)
        modules[name].weight.mul_(factor)
        modules[name].bias.mul_(factor)
    for name, c in cols:
        modules[name].weight[:, c] *= 1.0 / a


def _snapshot(modules: dict, bns: dict, cols: list) -> list[tuple[torch.Tensor, torch.Tensor]]:
    tensors = [modules[n].weight for n in bns] + [modules[n].bias for n in bns] + [modules[n].weight for n, _ in cols]
    return [(t, t.detach().clone()) for t in tensors]


@torch.no_grad()
def _restore(saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for t, copy in saved:
        t.copy_(copy)


def _reader_outputs(gated: GatedModel, probe: tuple, names: list[str]) -> list[torch.Tensor]:
    """Outputs of the reader modules on ``probe`` (eval mode): unchanged readers mean an unchanged model,
    since a unit's channels reach the output only through its readers."""
    outs: list[torch.Tensor] = []
    hooks = [gated.gm.get_submodule(n).register_forward_hook(lambda m, i, o: outs.append(o.detach()))
             for n in dict.fromkeys(names)]
    was = gated.gm.training
    gated.gm.eval()
    try:
        with torch.no_grad():
            gated.gm(*probe)
    finally:
        gated.gm.train(was)
        for h in hooks:
            h.remove()
    return outs


def _max_rel_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) / max(float(y.abs().max()), 1e-12) for x, y in zip(a, b))


@dataclass
class _Candidate:
    name: str
    bns: dict[str, torch.Tensor]
    readers: list[tuple[str, torch.Tensor]]


def _candidates(gated: GatedModel, scales: list, out: Rescaling) -> list[_Candidate]:
    """Groups with BN channels whose every reader is a plain column read (others refused with a reason)."""
    modules = dict(gated.gm.named_modules())
    found = []
    for g in gated.graph.groups:
        units = list(range(g.first_unit, g.first_unit + g.n_units))
        bns = {s.module: torch.as_tensor(np.isin(s.units, units)) for s in scales if np.isin(s.units, units).any()}
        readers = _readers(gated, set(units), modules)
        if not bns or isinstance(readers, str):
            out.refused.append(f"{g.name}: {readers if isinstance(readers, str) else 'no BatchNorm'}")
        else:
            found.append(_Candidate(g.name, bns, readers))
    return found


def _merge(cands: list[_Candidate]) -> tuple[dict, list]:
    bns: dict[str, torch.Tensor] = {}
    for c in cands:
        for name, mask in c.bns.items():
            bns[name] = bns.get(name, torch.zeros_like(mask)) | mask
    return bns, [r for c in cands for r in c.readers]


def _check(gated: GatedModel, modules: dict, cands: list[_Candidate], alpha: float, probe: tuple) -> float:
    """Scale ``cands`` by α; return how much any reader output moved (at α and at PROBE_ALPHA)."""
    bns, readers = _merge(cands)
    names = [n for n, _ in readers]
    reference = _reader_outputs(gated, probe, names)
    saved = _snapshot(modules, bns, readers)
    diff = 0.0
    for trial in (PROBE_ALPHA, alpha):
        _restore(saved)
        _scale(modules, bns, readers, trial, inverse=False)
        diff = max(diff, _max_rel_diff(_reader_outputs(gated, probe, names), reference))
    if diff > TOLERANCE:
        _restore(saved)
    return diff


def rescale_groups(gated: GatedModel, scales: list, alpha: float) -> Rescaling:
    """Rescale every group where the function provably (numerically) stays the same (module docstring).

    All candidate groups are tried at once first (two forward passes on ReLU networks); if that moves a
    reader output, each group is tried on its own.
    """
    modules = dict(gated.gm.named_modules())
    gen = torch.Generator().manual_seed(0)
    # NOTE: a large probe saturates clipped activations (ReLU6), which must then fail the check.
    probe = tuple(10 * torch.randn((2, *x.shape[1:]), generator=gen) for x in gated.graph.traced.example_inputs)
    out = Rescaling(alpha)
    cands = _candidates(gated, scales, out)
    if not cands:
        return out
    accepted = cands if _check(gated, modules, cands, alpha, probe) <= TOLERANCE else []
    if not accepted:
        for c in cands:
            diff = _check(gated, modules, [c], alpha, probe)
            if diff <= TOLERANCE:
                accepted.append(c)
            else:
                out.refused.append(f"{c.name}: reader outputs changed by {diff:.1e} of their scale "
                                   "(path not positively homogeneous)")
    bns, out.columns = _merge(accepted)
    out.bn_factor = {name: torch.where(mask, alpha, 1.0) for name, mask in bns.items()}
    return out


def undo_rescale(gated: GatedModel, r: Rescaling) -> None:
    """Divide the BN channels back by α and multiply the reader columns back."""
    masks = {name: f != 1 for name, f in r.bn_factor.items()}
    _scale(dict(gated.gm.named_modules()), masks, r.columns, r.alpha, inverse=True)

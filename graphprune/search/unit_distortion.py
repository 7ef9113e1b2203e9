"""Linearised per-unit output distortion: every unit's ``d_u`` from a few backward passes, not one forward each.

``rate_distortion``'s measured importance removes one unit at a time: ``d_u = (1/N) Σ_n ||f(x_n; u removed) −
f(x_n)||²``, one forward pass over the calibration inputs per unit.  Here removal is the gate ``g_u`` of unit u
going from 1 to 0 (``MaskedGraph.gated``, every value masked), and the change of the outputs is taken to first
order, ``f(g_u = 0) − f(g_u = 1) ≈ −∂f/∂g_u``:

    d_u ≈ (1/N) Σ_n Σ_o (∂f_o(x_n)/∂g_{n,u})²,

the squared Jacobian column of unit u, per sample (per-sample gates: row n of the gate acts on sample n only).
Each output element o of a sample (all floating outputs, flattened) costs one backward pass per batch; with more
than ``probes`` of them, ``probes`` Gaussian directions v (``E[(v·J)²] = ||J||²``) estimate the sum instead.

Exact where the outputs are linear in the gate (no nonlinearity between the unit and the outputs — tested);
elsewhere an approximation, good for *ordering* units when removing one moves the outputs little.  BatchNorm
runs in eval mode (as for the measured ``d_u``).  Values whose leading axis is not the batch read the
batch-mean gate (``MaskedGraph.gated``), which mixes the samples' derivatives there.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils._pytree import tree_flatten

from ..depgraph import DependencyGraph
from ..evaluate import split_batch
from ..masked_graph import MaskedGraph

__all__ = ["linearised_unit_distortion"]


def _flat_outputs(out) -> torch.Tensor:
    leaves, _ = tree_flatten(out)
    tensors = [t for t in leaves if torch.is_tensor(t) and t.is_floating_point()]
    n = int(tensors[0].shape[0])
    return torch.cat([t.reshape(n, -1) for t in tensors], dim=1)


def _probes(m: int, probes: int, seed: int) -> torch.Tensor:
    """Rows: the directions in a sample's output space (one-hot when ``m <= probes``, else Gaussian)."""
    if m <= probes:
        return torch.eye(m)
    return torch.randn(probes, m, generator=torch.Generator().manual_seed(seed))


def linearised_unit_distortion(graph: DependencyGraph, batches: list, probes: int = 32, seed: int = 0) -> np.ndarray:
    """``d_u`` for every unit (module docstring), on the inputs of ``batches`` (``(x, y)`` or ``x``)."""
    masked = MaskedGraph(graph, sites="all")
    masked.set_keep(graph.full_keep()).eval()
    total, samples = np.zeros(graph.n_units + 1), 0
    for batch in batches:
        inputs = split_batch(batch)[0]
        n = int(inputs[0].shape[0])
        gates = [torch.ones(n, graph.n_units + 1, requires_grad=True) for _ in masked.sites]
        with masked.gated(gates) as gated:
            out = _flat_outputs(gated(*inputs))
            directions = _probes(out.shape[1], probes, seed)
            for v in directions:
                grads = torch.autograd.grad((out * v).sum(), gates, retain_graph=True, allow_unused=True)
                jac = sum(g for g in grads if g is not None)  # a unit's gate is shared by every site carrying it
                if isinstance(jac, torch.Tensor):
                    total += (jac.double() ** 2).sum(0).numpy() / (1.0 if out.shape[1] <= probes else len(directions))
        samples += n
    return total[:-1] / max(samples, 1)

"""The correctness oracle every rewrite is held to (used by graphprune's tests; usable by yours).

For a model, example inputs and a keep mask over units:

1. structure: the pruned GraphModule lints, and every value has its planned shape (rewrite verifies);
2. numbers: pruned output == masked reference output (``passes.masked_model``), to ``rtol`` of the
   output's scale;
3. cost: the cost model's MACs/params for the plan equal what ``FlopCounterMode`` and ``numel`` count
   on the pruned module;
4. optionally ONNX: the pruned model exports and ONNX Runtime agrees with PyTorch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..depgraph import DependencyGraph, build_dependency_graph
from ..flops import counted_macs
from ..passes import masked_model, rewrite
from ..search.allocate import _repair_empty
from ..trace import normalize_inputs, trace

__all__ = ["randomize_", "random_keep", "fraction_keep", "OracleResult", "check_rewrite", "counted_macs"]


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give norms non-trivial statistics and affine params so that zeroing a channel is visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            for name in ("weight", "bias"):
                p = getattr(m, name, None)
                if isinstance(m, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)) \
                        and isinstance(p, torch.Tensor):
                    p.copy_(torch.rand(p.shape, generator=g) + 0.5 if name == "weight"
                            else torch.randn(p.shape, generator=g) * 0.1)
    return model


def random_keep(graph: DependencyGraph, rng: np.random.Generator, p_keep: float = 0.5) -> np.ndarray:
    """A random keep mask: each unit kept with probability ``p_keep``, >= 1 unit per group, no empty dim."""
    keep = rng.random(graph.n_units) < p_keep
    order = []
    for g in graph.groups:
        if not keep[g.units].any():
            keep[g.first_unit + rng.integers(g.n_units)] = True
        order.append(rng.permutation(g.n_units))
    return _repair_empty(graph, keep, order)


def fraction_keep(graph: DependencyGraph, ratio, latency=None) -> np.ndarray:
    """Each group keeping its first ``round(ratio · units)`` units (at least one).

    ``ratio`` is one fraction or one per group; with ``latency`` (a :class:`~graphprune.latency.LatencyModel`) each
    group takes the widest width of its menu at or below that count (its narrowest when none is), as a prune
    with measured widths would.
    """
    ratios = np.broadcast_to(np.asarray(ratio, dtype=np.float64), (len(graph.groups),))
    keep = graph.full_keep()
    for i, (g, r) in enumerate(zip(graph.groups, ratios)):
        count = max(1, round(float(r) * g.n_units))
        if latency is not None:
            menu = latency.width_menu(i)
            count = int(menu[menu <= count][-1]) if (menu <= count).any() else int(menu[0])
        keep[g.units] = np.arange(g.n_units) < count
    return keep


@dataclass
class OracleResult:
    graph: DependencyGraph
    keep: np.ndarray
    pruned: torch.nn.Module
    max_diff: float
    scale: float
    planned_macs: float
    counted_macs: float
    planned_params: float
    counted_params: float
    onnx_diff: float | None = None


def _first(y):
    if isinstance(y, dict):  # e.g. a Hugging Face ModelOutput kept by the torch.export front end
        y = list(y.values())
    return y[0] if isinstance(y, (tuple, list)) else y


def check_rewrite(model: torch.nn.Module, example_inputs, keep: np.ndarray | None = None, *,
                  seed: int = 0, p_keep: float = 0.5, rtol: float = 1e-5, onnx_path: str | None = None,
                  graph: DependencyGraph | None = None) -> OracleResult:
    """Prune ``model`` with ``keep`` (or a random plan) and assert the oracle; return the numbers."""
    inputs = normalize_inputs(example_inputs)
    graph = graph or build_dependency_graph(trace(model, inputs))
    assert graph.groups, "model has nothing prunable"
    keep = random_keep(graph, np.random.default_rng(seed), p_keep) if keep is None else keep
    pruned = rewrite(graph, keep)
    reference = masked_model(graph, keep)
    pruned.eval(), reference.eval()
    with torch.no_grad():
        got, want = _first(pruned(*inputs)), _first(reference(*inputs))
    diff = float((got - want).abs().max())
    scale = float(want.abs().max())
    assert diff <= rtol * max(scale, 1.0), f"pruned != masked reference: max diff {diff:.3e} (scale {scale:.3e})"
    cost = graph.cost(keep)
    counted = counted_macs(pruned, inputs)
    assert abs(counted - cost.macs) <= 1e-6 * max(counted, 1.0), \
        f"cost model MACs {cost.macs} != FlopCounterMode {counted}"
    params = float(sum(p.numel() for p in pruned.parameters()))
    assert params == cost.params, f"cost model params {cost.params} != counted {params}"
    result = OracleResult(graph, keep, pruned, diff, scale, cost.macs, counted, cost.params, params)
    if onnx_path is not None:
        from ..export import check_onnx, export_onnx

        check = check_onnx(pruned, inputs, export_onnx(pruned, inputs, onnx_path))
        assert check.max_abs_diff <= 1e-4 * max(scale, 1.0), f"ONNX Runtime differs by {check.max_abs_diff:.3e}"
        result.onnx_diff = check.max_abs_diff
    return result

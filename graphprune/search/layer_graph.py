"""The layer graph the PruningNet reads: one node per prunable group, features from the dependency graph.

Nodes are the groups of the dependency graph, in dataflow order (the order of their anchor parameters).
Edges (undirected):

* **shared layer**: groups i and j both have dims in one parameter (e.g. conv k's output channels are
  group i and its input channels group j: i feeds j through that layer);
* **dataflow chain**: consecutive groups in dataflow order (so residual networks whose block outputs are
  frozen still form a path, not isolated nodes).

Node features (``FEATURES``), standardised over the nodes of the model:

    op type (one-hot: conv, grouped/depthwise conv, linear, other), log2 in/out channels, kernel area,
    stride, log2 conv groups, log2 output feature-map size, MACs share, params share, depth in [0, 1],
    log2 units, importance statistics (mean, std, min of the group's max-normalised scores, and the
    group's mean raw score relative to the model's), and the target budget β (set per episode).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..depgraph import DependencyGraph
from ..importance import normalize_per_group

__all__ = ["LayerGraph", "FEATURES", "layer_graph"]

OP_TYPES = ("conv", "grouped_conv", "linear", "other")
FEATURES = (*(f"op_{t}" for t in OP_TYPES), "in_channels", "out_channels", "kernel", "stride", "conv_groups",
            "feature_map", "macs_share", "params_share", "depth", "units", "imp_mean", "imp_std", "imp_min",
            "imp_scale", "budget")
BUDGET = FEATURES.index("budget")


@dataclass
class LayerGraph:
    """Static node features (standardised, budget column 0), undirected ``edge_index`` (2, E)."""

    names: list[str]
    features: torch.Tensor
    edge_index: torch.Tensor

    def with_budget(self, budget: float) -> torch.Tensor:
        """Node features with the budget column set to ``budget`` (centred at 0.5: same for every node)."""
        x = self.features.clone()
        x[:, BUDGET] = (budget - 0.5) * 4.0
        return x


def _anchor_module(graph: DependencyGraph, group) -> tuple[str, torch.nn.Module | None]:
    name = group.anchor.value.lstrip("@").rpartition(".")[0]
    try:
        return name, graph.traced.gm.get_submodule(name)
    except AttributeError:
        return name, None


def _op_features(graph: DependencyGraph, group) -> list[float]:
    name, m = _anchor_module(graph, group)
    onehot = [0.0] * len(OP_TYPES)
    cin = cout = float(group.n_units)
    kernel = stride = groups = 1.0
    if isinstance(m, torch.nn.modules.conv._ConvNd):
        onehot[1 if m.groups > 1 else 0] = 1.0
        cin, cout = m.in_channels, m.out_channels
        kernel, stride, groups = float(np.prod(m.kernel_size)), float(max(m.stride)), float(m.groups)
    elif isinstance(m, torch.nn.Linear):
        onehot[2] = 1.0
        cin, cout = m.in_features, m.out_features
    else:
        onehot[3] = 1.0
    fmap = 1.0
    for node in graph.traced.gm.graph.nodes:
        if node.op == "call_module" and node.target == name and node.name in graph.shapes:
            fmap = float(np.prod(graph.shapes[node.name][2:])) if len(graph.shapes[node.name]) > 2 else 1.0
            break
    return onehot + [np.log2(cin), np.log2(cout), kernel, stride, np.log2(groups), np.log2(fmap)]


def _params_share(graph: DependencyGraph) -> np.ndarray:
    dense = graph.cost().params or 1.0
    full = graph.full_keep()
    out = []
    for g in graph.groups:
        keep = full.copy()
        keep[g.units] = False
        keep[g.first_unit] = True  # keep one unit: the cost a group can free at most
        out.append((dense - graph.cost(keep).params) / dense)
    return np.array(out)


def _edges(graph: DependencyGraph) -> torch.Tensor:
    owner: dict[str, set[int]] = {}
    for i, g in enumerate(graph.groups):
        for d in g.members:
            if d.value.startswith("@"):
                owner.setdefault(graph.param_alias.get(d.value, d.value), set()).add(i)
    pairs = {(i, i + 1) for i in range(len(graph.groups) - 1)}
    for groups in owner.values():
        pairs |= {(i, j) for i in groups for j in groups if i < j}
    both = sorted(pairs | {(j, i) for i, j in pairs})
    return torch.tensor(both, dtype=torch.long).T.reshape(2, -1)


def layer_graph(graph: DependencyGraph, scores: np.ndarray) -> LayerGraph:
    """Build the layer graph of ``graph`` with importance statistics from ``scores``."""
    norm = normalize_per_group(graph, scores, "max")
    macs = graph.group_macs_share()
    params = _params_share(graph)
    mean_all = float(np.mean(scores)) or 1.0
    rows = []
    for i, g in enumerate(graph.groups):
        s = norm[g.units]
        rows.append(_op_features(graph, g) + [
            macs[g.name], params[i], i / max(len(graph.groups) - 1, 1), np.log2(g.n_units),
            s.mean(), s.std(), s.min(), np.log(max(scores[g.units].mean(), 1e-12) / max(mean_all, 1e-12)), 0.0])
    x = np.array(rows, dtype=np.float64)
    std = x.std(0)
    x = np.where(std > 1e-9, (x - x.mean(0)) / np.where(std > 1e-9, std, 1.0), 0.0)
    return LayerGraph([g.name for g in graph.groups], torch.tensor(x, dtype=torch.float32), _edges(graph))

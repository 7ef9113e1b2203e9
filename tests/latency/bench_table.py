"""Bench: latency-table build time (first and cached) and prediction error on torchvision ResNets.

Run: ``python tests/latency/bench_table.py [resnet18 resnet50 ...]`` (ORT CPU, 1 thread, batch 1, 224x224).
Prints one JSON line per model: build seconds (first, cached), pieces (distinct specs / nodes), dense ms
(measured), predicted vs measured ms on pruned models, and the separable model's error on random
(c_in, c_out) pairs of a few pieces.  ``ratio_error`` compares predicted / dense with measured pruned /
measured dense timed in one interleaved batch: on a shared machine whose load changes between the build
and the check, that is the number that measures the model rather than the load.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision

from graphprune.depgraph import build_dependency_graph
from graphprune.latency import Target, build_latency_model
from graphprune.latency.sweep import time_widths
from graphprune.passes import rewrite
from graphprune.testing import fraction_keep, random_keep
from graphprune.trace import trace


def _separable_error(model, n_specs=3, n_pairs=4, seed=0):
    """Relative error of r_in(a) · r_out(b) against T(a, b) / T(full), on random (a, b) of the costliest
    specs, the full width timed in the same interleaved batch (so a machine slower now than at build time
    does not count as model error)."""
    rng = np.random.default_rng(seed)
    table = model.table
    two_axis = [p for p in table.pieces if len(p.spec.prunable) == 2]
    two_axis = sorted({p.spec.key: p for p in two_axis}.values(), key=lambda p: -table.timings[p.spec.key].full_ms)
    errors = []
    for p in two_axis[:n_specs]:
        s = p.spec
        pairs = [(int(rng.integers(s.full_in // 4, s.full_in + 1)), int(rng.integers(s.full_out // 4, s.full_out + 1)))
                 for _ in range(n_pairs)]
        measured = time_widths(s, [(s.full_in, s.full_out)] + pairs, table.target, sessions=2)[0]
        start_in, start_out = model._starts[table.pieces.index(p)]
        for (a, b), ms in zip(pairs, measured[1:]):
            errors.append(model._curves[start_in + a] * model._curves[start_out + b] / (ms / measured[0]) - 1)
    return errors


def bench(name: str) -> dict:
    torch.manual_seed(0)
    net, x = getattr(torchvision.models, name)().eval(), torch.randn(1, 3, 224, 224)
    graph = build_dependency_graph(trace(net, x))
    target = Target("ort-cpu", threads=1, batch=1)
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        model = build_latency_model(graph, target, cache_dir=cache, progress=False)
        first = time.perf_counter() - t
        t = time.perf_counter()
        build_latency_model(graph, target, cache_dir=cache, progress=False)
        cached = time.perf_counter() - t
    keeps = {"uniform40": fraction_keep(graph, 0.4), "menu40": fraction_keep(graph, 0.4, model),
             "uniform75": fraction_keep(graph, 0.75), "random60": random_keep(graph, np.random.default_rng(0), 0.6)}
    modules = [graph.traced.gm] + [rewrite(graph, k) for k in keeps.values()]
    measured = model.measure_ms(modules, x)
    t = time.perf_counter()
    for _ in range(1000):
        model.predict_ms(keeps["uniform40"])
    predict_us = (time.perf_counter() - t) * 1e3
    return {"model": name, "build_s_first": round(first, 2), "build_s_cached": round(cached, 3),
            "pieces": len({p.spec.key for p in model.table.pieces}), "nodes": len(model.table.pieces),
            "dense_ms_table": round(model.dense_ms, 3), "dense_ms_remeasured": round(measured[0], 3),
            "half_ms": round(model.table.half_ms, 3), "overhead_ms": round(model.table.overhead_ms, 4),
            "calibration": {"gamma": model.gamma, "offset_ms": round(model.offset, 3), "scale": round(model.scale, 3)},
            "pruned": {k: {"predicted_ms": round(model.predict_ms(keep), 3), "measured_ms": round(m, 3),
                           "ratio_error": round(model.predict_ms(keep) / model.dense_ms / (m / measured[0]) - 1, 3)}
                       for (k, keep), m in zip(keeps.items(), measured[1:])},
            "predict_us": round(predict_us, 1),
            "separable_rel_errors": [round(e, 3) for e in _separable_error(model)]}


if __name__ == "__main__":
    for arch in sys.argv[1:] or ["resnet18", "resnet50"]:
        print(json.dumps(bench(arch)), flush=True)

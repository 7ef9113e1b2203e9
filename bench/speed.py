"""Speed: prune time (graphprune vs Torch-Pruning) and ONNX Runtime latency (dense vs pruned).

1. **Prune time** on ResNet-50, DenseNet-121 and ViT-B/16 (torchvision, 1×3×224×224): wall-clock of
   ``graphprune.prune(model, 0.5)`` (trace + dependency graph + search + rewrite + verification) next to
   Torch-Pruning's ``MagnitudePruner(pruning_ratio=0.5)`` construction + ``step()``, one run each in the
   same process on fresh copies of the same model.  ``gp / TP`` > 1 means graphprune took longer.
2. **Latency**: the dense model and graphprune's pruned model (budget 0.5 of MACs) exported to ONNX and
   timed in ONNX Runtime (CPU, ``intra_op_num_threads`` = 1 and 2).  Dense and pruned are timed in
   alternating rounds (median of round medians), so a noisy neighbour hits both alike.  *ideal* =
   1 / MACs ratio; *efficiency* = measured speedup / ideal.

Writes ``bench/results/speed.json``, ``speed.md`` and ``speed.png``.

    python bench/speed.py
    python bench/speed.py --models resnet50 --threads 1 --rounds 2 --runs 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, build_model, environment, error_text, example_input, fmt, markdown_table, \
    torch_pruning_prune, write_json  # noqa: E402

MODELS = ("resnet50", "densenet121", "vit_b_16")
BUDGET = 0.5
TP_RATIO = 0.5


@dataclass
class PruneTimeRow:
    """Prune time of both tools on one model (wall-clock seconds)."""

    model: str
    gp_seconds: float | None = None
    gp_stages: dict[str, float] = field(default_factory=dict)
    gp_macs_ratio: float | None = None
    gp_error: str = ""
    tp_seconds: float | None = None
    tp_macs_ratio: float | None = None  # Torch-Pruning's own counter
    tp_error: str = ""

    @property
    def ratio(self) -> float | None:
        return self.gp_seconds / self.tp_seconds if self.gp_seconds and self.tp_seconds else None


@dataclass
class LatencyRow:
    """ONNX Runtime latency of dense vs graphprune-pruned, at one thread count."""

    model: str
    threads: int
    macs_ratio: float
    dense_ms: float
    pruned_ms: float

    @property
    def ideal_speedup(self) -> float:
        return 1.0 / self.macs_ratio

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.pruned_ms

    @property
    def efficiency(self) -> float:
        return self.speedup / self.ideal_speedup


def _fresh(name: str):
    from graphprune.testing import randomize_

    return randomize_(build_model(name)), example_input((1, 3, 224, 224))


def time_prune(name: str) -> tuple[PruneTimeRow, object | None]:
    """Both tools on fresh copies of ``name``; returns the row and graphprune's result (for latency)."""
    import graphprune

    row, res = PruneTimeRow(name), None
    model, x = _fresh(name)
    try:
        t = time.perf_counter()
        res = graphprune.prune(model, BUDGET, example_inputs=x, strategy="global", importance="l2",
                               return_result=True)
        row.gp_seconds = time.perf_counter() - t
        row.gp_stages, row.gp_macs_ratio = dict(res.report.seconds), res.report.macs_ratio
    except Exception as exc:
        row.gp_error = error_text(exc)
    model, x = _fresh(name)
    try:
        run = torch_pruning_prune(model, x, TP_RATIO)
        row.tp_seconds, row.tp_macs_ratio, row.tp_error = run.seconds, run.macs_ratio, run.error
    except Exception as exc:
        row.tp_error = error_text(exc)
    return row, res


def _interleaved(paths: tuple[Path, Path], x, threads: int, rounds: int, runs: int) -> tuple[float, float]:
    """Median (over rounds) of per-round median latencies, alternating dense/pruned, in ms."""
    from graphprune.export import ort_latency

    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for i in order:
            times[i].append(ort_latency(paths[i], (x,), runs=runs, warmup=3, threads=threads))
    return 1e3 * statistics.median(times[0]), 1e3 * statistics.median(times[1])


def time_latency(name: str, res, threads: list[int], rounds: int, runs: int, tmp: Path) -> list[LatencyRow]:
    """Export dense and pruned to ONNX and time both at each thread count."""
    from graphprune.export import export_onnx

    model, x = _fresh(name)
    paths = (export_onnx(model, (x,), tmp / f"{name}_dense.onnx"),
             export_onnx(res.model, (x,), tmp / f"{name}_pruned.onnx"))
    rows = []
    for n in threads:
        dense_ms, pruned_ms = _interleaved(paths, x, n, rounds, runs)
        rows.append(LatencyRow(name, n, res.report.macs_ratio, dense_ms, pruned_ms))
    return rows


# ------------------------------------------------------------------------------------------- output

def render(prune_rows: list[PruneTimeRow], lat_rows: list[LatencyRow], env: dict, args) -> str:
    prune_table = markdown_table(
        ["model", "graphprune s", "TP s", "gp / TP", "gp stages (s)", "gp MACs ratio", "TP MACs ratio", "errors"],
        [[r.model, fmt(r.gp_seconds, ".2f"), fmt(r.tp_seconds, ".2f"), fmt(r.ratio, ".2f"),
          ", ".join(f"{k} {v:.2f}" for k, v in r.gp_stages.items()), fmt(r.gp_macs_ratio), fmt(r.tp_macs_ratio),
          "; ".join(e for e in (r.gp_error and f"gp: {r.gp_error}", r.tp_error and f"TP: {r.tp_error}") if e)]
         for r in prune_rows])
    lat_table = markdown_table(
        ["model", "threads", "MACs ratio", "dense ms", "pruned ms", "speedup", "ideal (1/MACs)", "efficiency"],
        [[r.model, r.threads, fmt(r.macs_ratio), fmt(r.dense_ms, ".1f"), fmt(r.pruned_ms, ".1f"),
          fmt(r.speedup, ".2f"), fmt(r.ideal_speedup, ".2f"), fmt(r.efficiency, ".2f")] for r in lat_rows])
    return "\n".join([
        "# Speed: prune time and ONNX Runtime latency", "",
        "Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), "",
        f"Shared 2-core CPU: absolute times are noisy; compare the ratios (same process, same run).", "",
        f"## Prune time (graphprune budget {BUDGET} of MACs vs Torch-Pruning channel ratio {TP_RATIO})", "",
        "graphprune: wall-clock of `prune()` (its stages listed); Torch-Pruning: `MagnitudePruner(...)` "
        "construction + `step()`. One run each.", "", prune_table, "",
        f"## ONNX Runtime latency, dense vs graphprune-pruned (budget {BUDGET})", "",
        f"CPUExecutionProvider, batch 1; {args.rounds} alternating rounds × {args.runs} runs, median.", "",
        lat_table, "", "![speedup vs ideal](speed.png)"]) + "\n"


def plot(lat_rows: list[LatencyRow], path: Path) -> None:
    """Measured vs ideal speedup per model, one bar group per thread count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.model}\n{r.threads} thr" for r in lat_rows]
    xs = range(len(lat_rows))
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(lat_rows)), 4))
    ax.bar([i - 0.2 for i in xs], [r.speedup for r in lat_rows], 0.4, label="measured (ORT)")
    ax.bar([i + 0.2 for i in xs], [r.ideal_speedup for r in lat_rows], 0.4, label="ideal (1 / MACs ratio)",
           alpha=0.6)
    ax.axhline(1.0, color="k", lw=0.7)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set(ylabel="speedup over dense", title=f"graphprune budget {BUDGET}: ONNX Runtime speedup")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    from tqdm import tqdm

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--rounds", type=int, default=4, help="alternating dense/pruned rounds per thread count")
    p.add_argument("--runs", type=int, default=10, help="timed ORT runs per round")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    build_model("resnet18")(example_input((1, 3, 224, 224)))  # warm-up: first-call costs hit neither tool
    prune_rows, lat_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in tqdm(args.models, unit="model", dynamic_ncols=True):
            row, res = time_prune(name)
            prune_rows.append(row)
            if res is not None:
                lat_rows += time_latency(name, res, args.threads, args.rounds, args.runs, Path(tmp))
    env = environment()
    payload = {"budget": BUDGET, "tp_ratio": TP_RATIO, "rounds": args.rounds, "runs": args.runs,
               "environment": env,
               "prune_time": [asdict(r) | {"gp_over_tp": r.ratio} for r in prune_rows],
               "latency": [asdict(r) | {"speedup": r.speedup, "ideal_speedup": r.ideal_speedup,
                                        "efficiency": r.efficiency} for r in lat_rows]}
    write_json(RESULTS / "speed.json", payload)
    (RESULTS / "speed.md").write_text(render(prune_rows, lat_rows, env, args))
    if lat_rows:
        plot(lat_rows, RESULTS / "speed.png")
    print((RESULTS / "speed.md").read_text())


if __name__ == "__main__":
    main()

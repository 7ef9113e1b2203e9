"""ONNX Runtime latency for the rows of an accuracy report, measured on this machine.

Pruning in ``bench/accuracy.py`` is deterministic (magnitude criteria on committed checkpoints), so each
row's network is rebuilt here and timed beside the dense one. The two are measured in alternating rounds
and the speed-up is the ratio of the medians taken in the same window: a busy, noisy machine slows both
alike, so the ratio survives load drift that a single dense measurement at start-up would not.

    python bench/accuracy_latency.py                          # fills bench/results/accuracy.{json,md}
    python bench/accuracy_latency.py --models resnet20 --rounds 3 --runs 50
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

from accuracy import METHODS, RESULTS, pareto_plot, write_outputs  # noqa: E402

from graphprune.export.onnx import _feeds, _session, export_onnx  # noqa: E402
from graphprune.train import load_checkpoint  # noqa: E402


def session_for(model: nn.Module, batch: int, folder: Path, name: str):
    """An ORT session (CPU provider, one intra-op thread) and its feeds for a batch of 28×28×1 images."""
    example = torch.zeros(batch, 1, 28, 28)
    path = export_onnx(copy.deepcopy(model).eval().cpu(), example, folder / f"{name}_b{batch}.onnx")
    session = _session(path, threads=1)
    return session, _feeds(session, (example,))


def paired_medians(dense, pruned, rounds: int, runs: int) -> tuple[float, float]:
    """Median seconds per run of two sessions, timed in alternating rounds of ``runs`` calls each."""
    import time

    times: dict[int, list[float]] = {0: [], 1: []}
    for which, (session, feeds) in enumerate((dense, pruned)):
        for _ in range(max(5, runs // 10)):  # warm-up
            session.run(None, feeds)
    for _ in range(rounds):
        for which, (session, feeds) in enumerate((dense, pruned)):
            for _ in range(runs):
                start = time.perf_counter()
                session.run(None, feeds)
                times[which].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def runs_at(runs: int, batch: int) -> int:
    """Fewer calls per round for big batches, so every measurement takes a similar time."""
    return max(5, int(runs / batch ** 0.5))


def rounding_study(names: list[str], budgets: list[float], batches: list[int], rounds: int, runs: int) -> dict:
    """Latency of graphprune uniform-L1 with and without ``round_to=8`` (paired with the dense model).

    Odd widths (11, 22, 44 …) can miss the vectorised convolution paths of a CPU runtime, so a network
    with fewer MACs can run slower than the dense one; widths in multiples of 8 avoid that.
    """
    import graphprune

    from accuracy import EXAMPLE, count

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in names:
            teacher = load_checkpoint(REPO / "checkpoints" / f"{name}.pt").build().eval()
            dense_macs = count(teacher)[0]
            for budget in tqdm(budgets, desc=f"rounding {name}"):
                for round_to in (1, 8):
                    try:
                        pruned = graphprune.prune(teacher, budget, example_inputs=EXAMPLE, strategy="uniform",
                                                  importance="l1", round_to=round_to)
                    except graphprune.BudgetError as error:
                        rows.append({"model": name, "budget": budget, "round_to": round_to, "error": str(error)})
                        continue
                    row = {"model": name, "budget": budget, "round_to": round_to,
                           "macs_ratio": count(pruned)[0] / dense_macs,
                           "widths": sorted({m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)})}
                    for b in batches:
                        dense_s, pruned_s = paired_medians(session_for(teacher, b, folder, "dense"),
                                                           session_for(pruned, b, folder, "pruned"),
                                                           rounds, runs_at(runs, b))
                        row[f"speedup_b{b}"] = dense_s / pruned_s
                    rows.append(row)
    return {"batches": batches, "rounds": rounds, "runs": runs, "rows": rows}


def rounding_markdown(study: dict) -> str:
    bs = study["batches"]
    lines = ["# ORT latency vs channel rounding (graphprune uniform-L1, Fashion-MNIST baselines)", "",
             "Speed-up over the dense model (ONNX Runtime, CPU provider, 1 thread, paired alternating rounds) on "
             "this project's 2-core CPU machine while other jobs ran. `bench/accuracy_latency.py --rounding`.", "",
             "| model | budget | round_to | MACs | " + " | ".join(f"speed-up b{b}" for b in bs) + " | conv widths |",
             "|---|---|---|---|" + "---|" * len(bs) + "---|"]
    for r in study["rows"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['budget']} | {r['round_to']} | refused: {r['error'][:60]}… |"
                         + " |" * len(bs) + " |")
            continue
        lines.append(f"| {r['model']} | {r['budget']} | {r['round_to']} | {r['macs_ratio']:.3f} | "
                     + " | ".join(f"{r[f'speedup_b{b}']:.2f}×" for b in bs) + f" | {r['widths']} |")
    return "\n".join(lines) + "\n"


def measure(report: dict, models: list[str] | None, batches: list[int], rounds: int, runs: int) -> dict:
    rows = [r for r in report["rows"] if models is None or r["model"] in models]
    teachers = {name: load_checkpoint(REPO / "checkpoints" / f"{name}.pt").build().eval()
                for name in dict.fromkeys(r["model"] for r in rows)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        dense_sessions = {(name, b): session_for(m, b, folder, f"dense_{name}")
                          for name, m in teachers.items() for b in batches}
        for row in tqdm(rows, desc="latency"):
            pruned = METHODS[row["method"]](copy.deepcopy(teachers[row["model"]]), row["budget"])
            latency = {}
            for b in batches:
                ours = session_for(pruned, b, folder, "pruned")
                dense_s, pruned_s = paired_medians(dense_sessions[(row["model"], b)], ours, rounds, runs_at(runs, b))
                latency[f"b{b}"] = {"dense_ms": 1e3 * dense_s, "pruned_ms": 1e3 * pruned_s,
                                    "speedup": dense_s / pruned_s}
            row["ort"] = latency
            row["ort_ms"] = latency[f"b{batches[0]}"]["pruned_ms"]
    for name in teachers:
        report["dense"][name].pop("ort_ms", None)  # superseded by the paired dense timings in each row
    report["latency_settings"] = {"batches": batches, "rounds": rounds, "runs": runs, "threads": 1,
                                  "machine": "this project's 2-core CPU machine (other jobs running)"}
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", default=str(RESULTS / "accuracy.json"))
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rounding", action="store_true", help="only the round_to=1 vs 8 latency study")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.rounding:
        study = rounding_study(args.models or ["resnet20", "resnet56", "mobilenetv2"], [0.3, 0.5, 0.7],
                               args.batches, args.rounds, args.runs)
        (RESULTS / "latency_rounding.json").write_text(json.dumps(study, indent=2) + "\n")
        (RESULTS / "latency_rounding.md").write_text(rounding_markdown(study))
        print(rounding_markdown(study))
        return
    path = Path(args.report)
    report = measure(json.loads(path.read_text()), args.models, args.batches, args.rounds, args.runs)
    prefix = path.stem
    write_outputs(report, prefix)
    pareto_plot(report, RESULTS / f"{prefix}_pareto.png")


if __name__ == "__main__":
    main()

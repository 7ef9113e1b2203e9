"""Evolutionary search with candidate evaluation split over torchrun workers: wall time for 1 and 2, same answer?

Every worker runs the same evolutionary search (``graphprune.search.run_search("evolutionary")``, same seed,
``--threads`` torch threads each) inside ``graphprune.search.distributed.sharded_evaluation()``: each
generation's candidates are split round robin across the workers and the scores all-gathered (gloo).  Model:
the Fashion-MNIST ResNet-56 checkpoint (``--model``), candidates BN-recalibrated on ``--calib`` train images
and scored by minus the cross-entropy on ``--eval`` other train images.  Synthetic data when the data set is
not on disk (``--data synthetic``).

Measured per worker count: wall time of the search (after a barrier, model built and data loaded), the
evaluations split per rank, and the plan, score and score history; the results are *equal* when the plan,
score and every score in the history are bit-for-bit those of the 1-worker run.

    python bench/distributed_search.py                          # both runs (torchrun 1, then 2), then the table
    torchrun --nproc_per_node=2 bench/distributed_search.py     # one run: adds its row to the results, re-renders
    python bench/distributed_search.py --population 4 --generations 2 --model resnet20 --out /tmp/ds   # smoke

Writes ``bench/results/distributed_search.{json,md}`` (``--out``).  The machine's load is recorded beside the
times (``os.getloadavg``): on a shared machine the 2-worker speed-up is bounded by the idle cores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import environment, fmt, markdown_table, write_json  # noqa: E402

RESULTS = REPO / "bench" / "results"
EXAMPLE = torch.zeros(1, 1, 28, 28)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet56", help="checkpoints/<model>.pt (Fashion-MNIST baseline)")
    p.add_argument("--budget", type=float, default=0.5, help="fraction of dense MACs kept")
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--calib", type=int, default=128, help="train images for BatchNorm recalibration")
    p.add_argument("--eval", type=int, default=256, help="other train images scoring each candidate")
    p.add_argument("--data", default="fashion_mnist", choices=["fashion_mnist", "synthetic"])
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (equal results need equal)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (driver mode)")
    p.add_argument("--out", default=str(RESULTS / "distributed_search"), help="results path without suffix")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- worker
def _data(args) -> tuple[list, list]:
    gen = torch.Generator().manual_seed(0)
    if args.data == "synthetic":
        x = torch.randn(args.calib + args.eval, 1, 28, 28, generator=gen)
        y = torch.randint(0, 10, (len(x),), generator=gen)
    else:
        from graphprune.data import load_split

        x, y = load_split("fashion_mnist", "train", subset=args.calib + args.eval, stratified=True, seed=1).tensors
        perm = torch.randperm(len(y), generator=gen)
        x, y = x[perm], y[perm]
    chunk = lambda a, b: [(x[i:min(i + 64, b)], y[i:min(i + 64, b)]) for i in range(a, b, 64)]
    return chunk(0, args.calib), chunk(args.calib, args.calib + args.eval)


def worker(args) -> dict | None:
    """One rank's search; rank 0 returns the run's row."""
    import torch.distributed as dist

    import graphprune
    from graphprune import Budget
    from graphprune.evaluate import CandidateEvaluator, EvalConfig, classification_eval_fn
    from graphprune.importance import score_units
    from graphprune.search import run_search
    from graphprune.search.distributed import sharded_evaluation
    from graphprune.train import load_checkpoint

    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        model = load_checkpoint(REPO / "checkpoints" / f"{args.model}.pt").build().eval()
        calib, held = _data(args)
        graph = graphprune.inspect(model, EXAMPLE)
        scores = score_units(graph, "l2")
        local = {"n": 0}
        run_one = CandidateEvaluator.__call__

        def counted(self, keep):  # NOTE: what this rank evaluated itself (cache misses of its own evaluator)
            calls = self.calls
            score = run_one(self, keep)
            local["n"] += self.calls - calls
            return score

        CandidateEvaluator.__call__ = counted
        dist.barrier()
        start = time.perf_counter()
        with sharded_evaluation():
            result = run_search("evolutionary", graph, scores, Budget.macs(args.budget), calib_data=calib,
                                eval_fn=classification_eval_fn(held, "neg_loss"),
                                eval_config=EvalConfig(calib_batches=len(calib)), progress=False,
                                options={"population": args.population, "generations": args.generations})
        dist.barrier()
        seconds = time.perf_counter() - start
        per_rank: list = [None] * world
        dist.all_gather_object(per_rank, local["n"])
        if rank:
            return None
        return {"workers": world, "seconds": seconds, "evaluations": result.evaluations,
                "evaluations_per_rank": per_rank, "score": result.score, "ratio": result.ratio,
                "history": result.history, "keep": result.keep.astype(int).tolist(),
                "load_before": list(args.load_before), "load_after": list(os.getloadavg()),
                "threads_per_worker": args.threads}
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------- report
def _setting(args) -> dict:
    return {k: getattr(args, k) for k in ("model", "budget", "population", "generations", "calib", "eval", "data",
                                          "threads")}


def record(args, row: dict) -> dict:
    """Add ``row`` to the results file (replacing an earlier row of the same worker count and setting)."""
    path = Path(args.out + ".json")
    report = json.loads(path.read_text()) if path.exists() else {}
    if report.get("setting") != _setting(args):
        report = {"setting": _setting(args), "runs": {}}
    report["runs"][str(row["workers"])] = row
    report["environment"] = environment()
    base = report["runs"].get("1")
    for run in report["runs"].values():
        run["equal_to_1_worker"] = None if base is None else \
            (run["keep"], run["score"], run["history"]) == (base["keep"], base["score"], base["history"])
        run["speedup_vs_1_worker"] = None if base is None else base["seconds"] / run["seconds"]
    write_json(path, report)
    Path(args.out + ".md").write_text(render(report) + "\n")
    return report


def render(report: dict) -> str:
    s = report["setting"]
    head = (f"Evolutionary search ({s['population']} × {s['generations']} candidates, {s['model']}, "
            f"{s['budget']} of MACs, {s['calib']} calib + {s['eval']} eval images, {s['data']}), candidate "
            f"evaluation split over torchrun workers (gloo, {s['threads']} thread(s) each). Equal: plan, score "
            f"and score history bit for bit those of 1 worker. Load: 1-min load average before / after.\n\n")
    rows = [[w, fmt(r["seconds"], ".2f"), fmt(r["speedup_vs_1_worker"], ".2f"), r["evaluations"],
             "/".join(map(str, r["evaluations_per_rank"])), fmt(r["score"], ".4f"), fmt(r["ratio"], ".4f"),
             fmt(r["equal_to_1_worker"]), f"{r['load_before'][0]:.2f} / {r['load_after'][0]:.2f}"]
            for w, r in sorted(report["runs"].items(), key=lambda kv: int(kv[0]))]
    return head + markdown_table(["workers", "search s", "speed-up", "evaluations", "per rank", "score", "MACs",
                                  "equal", "load"], rows)


def drive(args, argv: list[str]) -> dict:
    """Run ``torchrun --nproc_per_node=W`` this script for each W in ``--workers``, one after the other."""
    report = {}
    for workers in args.workers:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(workers),
                   str(Path(__file__).resolve()), *argv]
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"torchrun --nproc_per_node={workers} failed:\n{done.stderr[-4000:]}")
        report = json.loads(Path(args.out + ".json").read_text())
    print(render(report))
    return report


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if "RANK" not in os.environ:  # not under torchrun: the driver
        return drive(args, argv)
    args.load_before = os.getloadavg()
    row = worker(args)
    return record(args, row) if row is not None else None


if __name__ == "__main__":
    main()

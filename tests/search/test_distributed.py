"""Candidate evaluation split over 2 torchrun processes (search/distributed.py) gives the 1-process answer."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graphprune.search.distributed import ShardedEvaluator, sharded_evaluation

ROOT = Path(__file__).resolve().parents[2]
CASE = Path(__file__).with_name("distributed_case.py")


def _case():
    spec = importlib.util.spec_from_file_location("distributed_case", CASE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_processes_find_the_one_process_plan_and_scores(tmp_path):
    out = tmp_path / "ranks.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # NOTE: --standalone: a local rendezvous on a free port, so parallel test runs do not collide
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(CASE), str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    sharded = json.loads(out.read_text())
    assert sharded.pop("world_size") == 2
    per_rank = sharded.pop("per_rank")
    alone = _case().run_searches()
    # the work was split: each rank ran about half of the evaluations one process runs (the sensitivity
    # profile's dense reference is a single evaluation: both ranks run it)
    total = sum(r["evaluations"] for r in alone.values())
    assert sum(per_rank) == total + 1 and max(per_rank) <= total // 2 + 2, (per_rank, total)
    for name in alone:
        assert sharded[name]["keep"] == alone[name]["keep"], name
        assert sharded[name]["history"] == alone[name]["history"], name  # bit for bit, in order
        assert sharded[name]["score"] == alone[name]["score"] and sharded[name]["ratio"] == alone[name]["ratio"]
        assert sharded[name]["info"] == alone[name]["info"], name  # sensitivity drops
        assert sharded[name]["evaluations"] == alone[name]["evaluations"], name  # counted over both ranks
    assert len(alone["evolutionary"]["history"]) == 15


def test_without_a_process_group_is_a_clear_error():
    with pytest.raises(RuntimeError, match="init_process_group"):
        with sharded_evaluation():
            pass


class _Counting:
    """A stand-in evaluator: score = number of kept units; counts its calls."""

    class config:
        cache = True

    def __init__(self):
        self.seen = []

    def __call__(self, keep):
        self.seen.append(tuple(keep))
        return float(np.sum(keep))


def test_one_rank_group_evaluates_each_new_candidate_once(tmp_path):
    """World of one (gloo, file rendezvous): repeats within a batch and across batches come from the cache."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        inner = _Counting()
        evaluator = ShardedEvaluator(inner)
        a, b = np.array([1, 0, 1], bool), np.array([1, 1, 1], bool)
        assert evaluator.evaluate_many([a, b, a]) == [2.0, 3.0, 2.0]
        assert evaluator.evaluate_many([b]) == [3.0] and evaluator(a) == 2.0
        assert evaluator.calls == 2 and len(inner.seen) == 2
    finally:
        dist.destroy_process_group()

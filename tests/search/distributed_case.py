"""The search both sides of tests/search/test_distributed.py run: in the test process, and on every rank of
``torchrun --nproc_per_node=2 tests/search/distributed_case.py OUT.json`` (rank 0 writes OUT.json)."""
import json
import sys

import torch
import torch.nn as nn

import graphprune
from graphprune import Budget
from graphprune.importance import score_units
from graphprune.search import run_search

SEARCHES = {"evolutionary": {"population": 5, "generations": 3}, "sensitivity": {"levels": (0.25, 0.5)}}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()


def run_searches() -> dict:
    """Each search's plan, score, history and evaluation count (JSON-ready)."""
    torch.set_num_threads(1)  # NOTE: the reference and every rank compute with the same thread count
    model, x = _model(), torch.randn(2, 3, 8, 8)
    gen = torch.Generator().manual_seed(1)
    calib = [(torch.randn(8, 3, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen)) for _ in range(2)]
    graph = graphprune.inspect(model, x)
    scores = score_units(graph, "l2")
    out = {}
    for name, options in SEARCHES.items():
        r = run_search(name, graph, scores, Budget.macs(0.5), calib_data=calib, options=options, progress=False)
        out[name] = {"keep": r.keep.astype(int).tolist(), "score": r.score, "ratio": r.ratio,
                     "history": r.history, "evaluations": r.evaluations, "info": r.info.get("drops")}
    return out


if __name__ == "__main__":
    import torch.distributed as dist

    from graphprune.search.distributed import sharded_evaluation

    from graphprune.evaluate import CandidateEvaluator

    evaluated = []  # what this rank ran itself (cache misses of its own evaluator)
    run_one = CandidateEvaluator.__call__

    def counted(self, keep):
        calls = self.calls
        score = run_one(self, keep)
        evaluated.extend([1] * (self.calls - calls))
        return score

    CandidateEvaluator.__call__ = counted
    dist.init_process_group("gloo")
    try:
        with sharded_evaluation():
            result = run_searches()
        result["world_size"] = dist.get_world_size()
        result["per_rank"] = [None] * dist.get_world_size()
        dist.all_gather_object(result["per_rank"], len(evaluated))
        if dist.get_rank() == 0:
            with open(sys.argv[1], "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()

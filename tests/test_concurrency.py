"""prune is thread safe: two prunes in two threads while a third thread runs unrelated inference.

fx's tracer patches ``torch.nn.Module.__call__`` / ``__getattr__`` for the whole process while it traces;
graphprune serialises its traces and lets other threads' calls pass straight through, and never swaps
``sys.stderr``.  Each round checks every result against a reference computed before the threads start.
"""
import sys
import threading

import torch
import torch.nn as nn

import graphprune
from graphprune.testing import randomize_

ROUNDS = 20
MODULE_CALL, MODULE_GETATTR = torch.nn.Module.__call__, torch.nn.Module.__getattr__  # before any trace


class ConvNet(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, 4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x))) + x
        return self.fc(x.mean((2, 3)))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(16, 32), nn.Linear(32, 24), nn.Linear(24, 3)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class Bystander(nn.Module):
    """Inference in a third thread; its submodule calls go through the patched Module.__call__."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))

    def forward(self, x):
        return self.body(x)


def _signature(gm) -> list[tuple[str, str]]:
    return [(n.op, str(n.target)) for n in gm.graph.nodes]


def _prune_and_check(model, x, reference, errors: list, name: str) -> None:
    """Prune ``model`` and hold the result to the masked oracle and to the single-threaded ``reference``."""
    try:
        result = graphprune.prune(model, 0.5, x, return_result=True, output="graph")  # compares graphs
        result.model.graph.lint()
        assert result.report.macs <= 0.5 * result.report.dense_macs + 1e-6, "budget missed"
        masked = graphprune.masked_model(result.graph, result.plan.keep_mask(result.graph)).eval()
        with torch.no_grad():
            got = result.model(x)
            torch.testing.assert_close(got, masked(x), rtol=1e-4, atol=1e-5)
        assert _signature(result.model) == _signature(reference), "the pruned graph differs (stray nodes?)"
        with torch.no_grad():
            assert torch.equal(got, reference(x))
    except BaseException as exc:  # reported by the main thread
        errors.append(f"{name}: {type(exc).__name__}: {exc}")


def _infer(model, x, want, stop: threading.Event, errors: list, runs: list) -> None:
    try:
        while not stop.is_set():
            with torch.no_grad():
                got = model(x)
            assert torch.equal(got, want), "inference changed while another thread traced"
            runs.append(1)
    except BaseException as exc:
        errors.append(f"inference: {type(exc).__name__}: {exc}")


def test_two_prunes_and_an_inference_in_parallel():
    conv, mlp = randomize_(ConvNet(12)).eval(), MLP().eval()
    x_conv, x_mlp = torch.randn(2, 3, 8, 8), torch.randn(4, 16)
    bystander, x_by = Bystander().eval(), torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        want = bystander(x_by)
    refs = {"conv": graphprune.prune(conv, 0.5, x_conv, output="graph"),
            "mlp": graphprune.prune(mlp, 0.5, x_mlp, output="graph")}
    stderr = sys.stderr
    for round_ in range(ROUNDS):
        errors: list[str] = []
        runs: list[int] = []
        stop = threading.Event()
        reader = threading.Thread(target=_infer, args=(bystander, x_by, want, stop, errors, runs))
        workers = [threading.Thread(target=_prune_and_check, args=(conv, x_conv, refs["conv"], errors, "conv")),
                   threading.Thread(target=_prune_and_check, args=(mlp, x_mlp, refs["mlp"], errors, "mlp"))]
        reader.start()
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
        stop.set()
        reader.join(timeout=60)
        assert not errors, f"round {round_}: {errors}"
        assert runs, "the inference thread never ran"
        assert sys.stderr is stderr, f"round {round_}: sys.stderr left redirected"
    assert torch.nn.Module.__call__ is MODULE_CALL and torch.nn.Module.__getattr__ is MODULE_GETATTR

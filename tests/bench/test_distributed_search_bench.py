"""bench/distributed_search.py: the 1- and 2-worker runs agree and the results are written."""
import importlib.util
import json
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_distributed_search", REPO / "bench" / "distributed_search.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tiny_run_is_equal_for_one_and_two_workers(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    argv = ["--model", "resnet20", "--population", "3", "--generations", "1", "--data", "synthetic",
            "--calib", "8", "--eval", "8", "--out", str(out)]
    bench = _bench()
    with monkeypatch.context() as env:  # NOTE: the 1-worker rank in this process: one torchrun launch less
        for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                            "MASTER_PORT": str(_free_port())}.items():
            env.setenv(name, value)
        bench.main(argv)
    report = bench.main(argv + ["--workers", "2"])  # the driver: torchrun --nproc_per_node=2
    (experiment,) = report["experiments"]
    runs = experiment["runs"]
    assert set(runs) == {"1", "2"} and runs["2"]["equal_to_1_worker"] is True
    assert runs["2"]["evaluations"] == runs["1"]["evaluations"] == sum(runs["2"]["evaluations_per_rank"])
    assert json.loads((tmp_path / "ds.json").read_text())["experiments"][0]["runs"]["2"]["keep"] == runs["1"]["keep"]
    assert "| 2 |" in (tmp_path / "ds.md").read_text()

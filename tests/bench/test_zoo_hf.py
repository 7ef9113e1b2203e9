"""bench/zoo.py's hf: family, smoke-sized: one tiny config through the zoo worker (graphprune and Torch-Pruning)."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def zoo(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import zoo

    yield zoo
    for name in ("zoo", "zoo_hf", "zoo_report", "common"):
        sys.modules.pop(name, None)


def test_hf_family_lists_the_twelve_configs(zoo):
    args = zoo.parse_args(["--family", "hf"])
    assert args.family == "hf"
    import zoo_hf

    assert len(zoo_hf.NAMES) == 12 and len(set(zoo_hf.NAMES)) == 12


def test_worker_prunes_an_hf_config_and_runs_torch_pruning_on_it(zoo, tmp_path):
    spec = zoo.ModelSpec("hf:bert", 0, 0.1)
    row = zoo.run_worker(spec, zoo.WorkerConfig(skip_onnx=True, tp_limit=60), tmp_path / "row.json")
    assert row.gp_ok and row.gp_macs_match and row.gp_macs_ratio <= 0.5
    assert row.output_shape == [1, 10]
    try:
        import torch_pruning  # noqa: F401 - the bench extra; CI installs the test extra only
    except ImportError:
        assert not row.tp_ok and "torch_pruning" in row.tp_error  # the row says why, graphprune's part still ran
        return
    assert row.tp_ok, row.tp_error  # Torch-Pruning's num_heads recipe runs on BERT
    assert 0 < row.tp_macs_ratio_counted < 1

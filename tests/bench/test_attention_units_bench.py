"""bench/attention_units.py: both pruned shapes have equal MACs, are timed, and the results are written."""
import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_attention_units", REPO / "bench" / "attention_units.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NOTE: dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_small_config_times_both_shapes_at_equal_macs(tmp_path):
    rows = _bench().main(["--configs", "small", "--rounds", "1", "--runs", "2", "--out", str(tmp_path / "au")])
    (row,) = rows
    assert (row.heads_shape, row.head_dim_shape) == ("2x16", "4x8") and abs(row.macs_ratio - 0.5) < 1e-6
    assert row.ort_heads_ms > 0 and row.torch_head_dim_ms > 0
    saved = json.loads((tmp_path / "au.json").read_text())
    assert saved["rows"][0]["ort_ratio"] == row.ort_ratio

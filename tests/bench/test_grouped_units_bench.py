"""bench/grouped_units.py: every variant meets the budget, is timed against dense, and the results are written."""
import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_grouped_units", REPO / "bench" / "grouped_units.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NOTE: dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_small_regnet_times_every_variant(tmp_path):
    bench = _bench()
    (row,) = bench.main(["--models", "regnet_y_400mf", "--size", "32", "--repeats", "1", "--sessions", "1",
                         "--out", str(tmp_path / "gu")])
    assert set(row.ms) == set(bench.VARIANTS) and row.dense_ms > 0
    assert all(0.4 < m <= 0.5 for m in row.macs.values())
    assert row.groups["groups"].startswith("grouped conv units groups")
    assert row.groups["group_width"].startswith("grouped conv units group_width")
    saved = json.loads((tmp_path / "gu.json").read_text())
    assert saved["rows"][0]["ms"] == row.ms
    assert "regnet_y_400mf" in (tmp_path / "gu.md").read_text()

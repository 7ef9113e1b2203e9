"""bench/in_place.py: one row per model, rendered; a smoke test on the smallest torchvision model."""
import importlib.util
import sys
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_in_place", REPO / "bench" / "in_place.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NOTE: dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_squeezenet_row_comes_back_as_its_own_class_and_renders():
    bench = _bench()
    row = bench.run_one("squeezenet1_1", limit_s=120)
    assert not row.error and row.output_kind == "module", row.reason
    assert row.keys_same and row.rebuilt_same and row.mask_rel_diff <= 1e-4
    text = bench.render([asdict(row)], {"torch": "x", "date": "y"})
    assert "1/1 models came back as their own class; 1 of them" in text and "| squeezenet1_1 |" in text

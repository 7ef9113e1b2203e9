"""bench/detectors.py: a smoke test of graphprune's per-model worker on the smallest detector (SSDlite)."""
import functools
import importlib.util
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_detectors", REPO / "bench" / "detectors.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NOTE: dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_ssdlite_row_is_pruned_to_half_its_macs_and_matches_its_masked_reference(monkeypatch):
    pytest.importorskip("matplotlib")  # the bench's photo ships with matplotlib's sample data
    bench = _bench()
    # NOTE: 3 classes instead of 91: SSD's post-processing loops over the classes, and recording 90 rounds of it
    # is most of the run (16 s -> 5 s of CPU); the rest of the detector is torchvision's as the bench builds it
    monkeypatch.setattr(bench, "build", functools.partial(bench.build, num_classes=3))
    name = "ssdlite320_mobilenet_v3_large"
    x = bench.photo(96)  # NOTE: SSDlite's transform resizes to 320 whatever the input; a small photo loads faster
    row = bench.run_graphprune(name, x, bench.dense_of(name, x), onnx=False)
    assert not row.error, row.error
    assert row.front_end == "record" and row.forward_ok
    assert row.macs_ratio == pytest.approx(0.5, abs=0.02)
    assert row.head_diff <= 1e-4 * max(1.0, row.head_scale)
    text = bench.render([bench.Row(**asdict(row))])
    assert f"| {name} | graphprune | {row.macs_ratio:.3f} |" in text


def test_two_stage_heads_count_the_mask_head_on_the_detections_it_is_fed():
    """Mask R-CNN feeds its mask head the <= 100 post-processed detections, not the ~1000 proposals."""
    import torch

    bench = _bench()
    model = bench.build("maskrcnn_resnet50_fpn", 64)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        outs, boxes = bench.heads(model, x)
        detections = model(list(x))[0]["boxes"]
    assert sum(len(p) for p in boxes.proposals) > len(boxes.detections[0])
    assert outs[-1].shape[0] == len(boxes.detections[0]) == len(detections) <= 100

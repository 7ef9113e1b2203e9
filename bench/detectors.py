"""torchvision detectors pruned to 0.5 of their backbone + neck + head MACs, graphprune vs Torch-Pruning.

    PYTHONPATH=. python bench/detectors.py                       # all eight, writes bench/results/detectors.{json,md}
    PYTHONPATH=. python bench/detectors.py --models ssdlite320_mobilenet_v3_large --size 320

Setup (both tools): ``weights=None, weights_backbone=None``, eval mode, BatchNorm statistics and affine
parameters randomised (``graphprune.testing.randomize_``) so that a zeroed channel is visible; R-CNN, RetinaNet and
FCOS are built with ``min_size=max_size=<size>`` so the image is not upscaled to 800.  The input is a real photo
(``grace_hopper.jpg``, shipped with matplotlib's sample data), resized to ``<size>``².

Measured per model and tool:

* **MACs kept** of backbone + FPN + heads (``torch.utils.flop_counter.FlopCounterMode`` over ``heads()``: the
  backbone, the RPN head, the box head on the dense model's ~1000 proposals and the mask / keypoint heads on its
  ≤100 post-processed detections, as ``RoIHeads`` feeds them in eval mode; dense and pruned counted on the same
  boxes; anchors, box decoding, NMS and post-processing are not counted).
* **forward**: the pruned detector runs end to end (``model([image])``).
* **head max |diff|**: pre-NMS head outputs (class logits, box regressions, centerness, mask and keypoint logits)
  of the pruned model against the *masked reference*: the original with the removed channels zeroed.  Two-stage
  models are compared on the *same boxes* (the masked reference's proposals and detections; the dense model's
  detections where the reference has none).  graphprune's reference comes
  from its plan; Torch-Pruning's from the index sets of each group it pruned (``interactive=True``), zeroed on a
  copy before ``group.prune()``.
* **ONNX** (``--onnx``): ``torch.onnx.export`` of the pruned detector (TorchScript-based exporter, opset 17, as
  torchvision's own ONNX tests) and ONNX Runtime against PyTorch on every (post-NMS) output, each named; "not
  informative" when both return 0 boxes; ``—`` where not attempted.
* **prune s**: graphprune: the report's stage times; Torch-Pruning: building the pruner + ``step``.

graphprune: ``prune(model, 0.5, image, front_end="record", output="module")`` — no per-model settings: the
anchors, the box coder and ``num_classes`` dims are frozen because they feed data-dependent post-processing.
Torch-Pruning 1.6: ``MagnitudePruner`` (L2, per layer) with the per-model ``ignored_layers`` of its own
torchvision test (``tests/test_torchvision_models.py``: the detection heads' last layers, FPN / ROI heads for the
R-CNNs); its channel ratio is bisected (5 steps) so its MACs land near 0.5.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment, error_text, fmt, markdown_table, write_json  # noqa: E402
from detectors_tp import tp_ignored, zero_group  # noqa: E402

import graphprune  # noqa: E402
from graphprune.passes.masked_reference import _zero_parameters  # noqa: E402
from graphprune.testing import randomize_  # noqa: E402

D = torchvision.models.detection
MODELS = ["fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn", "retinanet_resnet50_fpn",
          "fcos_resnet50_fpn", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large", "maskrcnn_resnet50_fpn",
          "keypointrcnn_resnet50_fpn"]
FIXED_SIZE = {"ssd300_vgg16": 300, "ssdlite320_mobilenet_v3_large": 320}  # their transform resizes to this
N_PROPOSALS = None  # two-stage heads run on all of the reference's proposals (MACs as the model spends them)


def build(name: str, size: int, **overrides) -> torch.nn.Module:
    """torchvision's ``name`` with random weights and BatchNorm statistics; ``overrides`` go to its builder."""
    kwargs = {**({} if name in FIXED_SIZE else {"min_size": size, "max_size": size}), **overrides}
    torch.manual_seed(0)
    return randomize_(getattr(D, name)(weights=None, weights_backbone=None, **kwargs).eval())


def photo(size: int) -> torch.Tensor:
    """grace_hopper.jpg from matplotlib's sample data, (1, 3, size, size) in [0, 1]."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = torchvision.io.decode_image(str(path)).float()[None] / 255
    return torch.nn.functional.interpolate(image, size=(size, size), mode="bilinear", antialias=True)


# ------------------------------------------------------------------------------------------- head outputs

@dataclass
class Boxes:
    """The boxes a two-stage detector's ROI heads run on: the RPN's ``proposals`` feed the box head, the
    post-processed ``detections`` (at most ``box_detections_per_img``, 100) feed the mask / keypoint heads, as
    ``RoIHeads.forward`` does in eval mode.  Empty lists for one-stage detectors."""

    proposals: list = field(default_factory=list)
    detections: list = field(default_factory=list)


def heads(model: torch.nn.Module, x: torch.Tensor, boxes: Boxes | None = None) -> tuple[list, Boxes]:
    """Pre-NMS head outputs of a torchvision detector on ``x``; two-stage heads on ``boxes`` (or its own).

    Returns (flat list of head tensors, the boxes used).
    """
    images, _ = model.transform(list(x))
    features = model.backbone(images.tensors)
    levels = list(features.values()) if isinstance(features, dict) else [features]
    if not hasattr(model, "rpn"):  # one-stage: RetinaNet, FCOS, SSD, SSDlite
        out = model.head(levels)
        return [out[k] for k in sorted(out)], Boxes()
    objectness, deltas = model.rpn.head(levels)
    roi, sizes = model.roi_heads, images.image_sizes
    proposals = boxes.proposals if boxes else [p[:N_PROPOSALS] for p in model.rpn(images, features)[0]]
    scores, regressions = roi.box_predictor(roi.box_head(roi.box_roi_pool(features, proposals, sizes)))
    # NOTE: the detections depend on the box scores; given boxes are reused as they are (same boxes, both models)
    detections = boxes.detections if boxes else roi.postprocess_detections(scores, regressions, proposals, sizes)[0]
    outs = [*objectness, *deltas, scores, regressions]
    if getattr(roi, "mask_predictor", None) is not None:
        outs.append(roi.mask_predictor(roi.mask_head(roi.mask_roi_pool(features, detections, sizes))))
    if getattr(roi, "keypoint_predictor", None) is not None:
        outs.append(roi.keypoint_predictor(roi.keypoint_head(roi.keypoint_roi_pool(features, detections, sizes))))
    return outs, Boxes(proposals, detections)


def head_macs(model: torch.nn.Module, x: torch.Tensor, boxes: Boxes) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        heads(model, x, boxes)
    return counter.get_total_flops() / 2


def max_diff(a: list, b: list) -> float:
    """Largest |a - b| over pairs of head tensors; empty ones (no boxes to run a head on) are skipped."""
    return max(float((p - q).abs().max()) for p, q in zip(a, b) if p.numel())


# ------------------------------------------------------------------------------------------- the tools

@dataclass
class Row:
    model: str
    tool: str
    macs_ratio: float | None = None
    forward_ok: bool | None = None
    head_diff: float | None = None
    head_scale: float | None = None
    onnx: str | None = None
    prune_s: float | None = None
    front_end: str | None = None
    output: str | None = None
    groups_pruned: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Dense:
    """The dense detector's MACs on its own proposals and detections (the pruned ones are counted on the same
    boxes: how many boxes an RPN or NMS keeps depends on scores, which pruning changes)."""

    boxes: Boxes
    macs: float


def _check(row: Row, name: str, pruned, reference, x, dense: Dense, onnx: bool) -> None:
    """Fill MACs, forward, head diff (and ONNX) for a pruned detector against its masked reference."""
    with torch.no_grad():
        ref_out, ref_boxes = heads(reference, x)
        if not any(len(d) for d in ref_boxes.detections):  # NOTE: any boxes test equivalence; keep the heads fed
            ref_boxes = Boxes(ref_boxes.proposals, dense.boxes.detections)
            ref_out, _ = heads(reference, x, ref_boxes)
        out, _ = heads(pruned, x, ref_boxes)
        row.head_diff = max_diff(out, ref_out)
        row.head_scale = max(float(t.abs().max()) for t in ref_out if t.numel())
        row.macs_ratio = head_macs(pruned, x, dense.boxes) / dense.macs
        try:
            pruned(list(x))
            row.forward_ok = True
        except Exception as exc:
            row.forward_ok, row.error = False, f"forward: {error_text(exc)}"
    if onnx and row.forward_ok:
        row.onnx = _onnx(pruned, x)


def _onnx(model, x) -> str:
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # NOTE: torchvision's detectors export with the TorchScript-based exporter (their own ONNX tests)
            torch.onnx.export(model, (list(x),), f"{tmp}/m.onnx", opset_version=17, dynamo=False)
            return _ort_check(model, x, f"{tmp}/m.onnx")
    except Exception as exc:
        return f"fails: {error_text(exc, 160, where=False)}"


def _ort_check(model, x, path: str) -> str:
    """ONNX Runtime against PyTorch on every output of the exported detector (boxes, scores, labels, masks,
    keypoints: all post-NMS), each output's max |diff| named.  Zero detections make the comparison vacuous and
    the text says "not informative"; tied scores (random weights) make the order of boxes with equal scores, and
    so boxes / labels, depend on each runtime's top-k, which the text counts."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # NOTE: the mask paste loop warns once per box about its declared shape
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x[0].numpy()})
    with torch.no_grad():
        want = {k: t.numpy() for k, t in model(list(x))[0].items()}
    shapes = [(k, g.shape, w.shape) for g, (k, w) in zip(got, want.items()) if g.shape != w.shape]
    if len(got) != len(want) or shapes:
        return f"exports; ORT shapes differ from PyTorch's: {shapes or (len(got), len(want))}"
    n = len(want["boxes"])
    if n == 0:
        return "ok, not informative (0 boxes on both)"
    diffs = ", ".join(f"{k} {float(np.abs(g.astype(np.float64) - w).max()):.1e}"
                      for g, (k, w) in zip(got, want.items()))
    distinct = len(np.unique(want["scores"].round(5)))
    ties = f"; {distinct} distinct scores" if distinct < n else ""
    return f"ok ({n} boxes; max |diff| {diffs}{ties})"


def run_graphprune(name: str, x: torch.Tensor, dense: Dense, onnx: bool) -> Row:
    row = Row(name, "graphprune")
    model = build(name, x.shape[-1])
    try:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = graphprune.prune(model, 0.5, x, front_end="record", return_result=True, **_module_output())
        row.prune_s = time.perf_counter() - t
        row.front_end = result.report.front_end
        row.output = getattr(result.report, "output_kind", "graph")
        keep = result.plan.keep_mask(result.graph)
        row.groups_pruned = f"{sum(1 for g in result.graph.groups if not keep[g.units].all())}/" \
                            f"{len(result.graph.groups)}"
        reference = copy.deepcopy(model)
        _zero_parameters(reference, result.graph, keep)
        if not isinstance(result.model, type(model)):
            row.notes.append("result is a GraphModule (replays the example's selections): heads not compared")
            return row
        _check(row, name, result.model, reference, x, dense, onnx)
    except Exception as exc:
        row.error = f"{type(exc).__name__}: {error_text(exc, 400, where=False)}"
        traceback.print_exc(limit=4)
    return row


def run_dense(name: str, x: torch.Tensor, onnx: bool) -> Row:
    """The unpruned detector through the same ONNX check: what export + ONNX Runtime do without pruning."""
    row = Row(name, "dense")
    model = build(name, x.shape[-1])
    with torch.no_grad():
        model(list(x))
    row.forward_ok, row.macs_ratio = True, 1.0
    if onnx:
        row.onnx = _onnx(model, x)
    return row


def _module_output() -> dict:
    import inspect

    return {"output": "module"} if "output" in inspect.signature(graphprune.prune).parameters else {}


def run_torch_pruning(name: str, x: torch.Tensor, dense: Dense, target: float, onnx: bool) -> Row:
    import torch_pruning as tp

    row = Row(name, "torch-pruning")
    lo, hi, best = 0.0, 0.8, None
    try:
        for step in range(5):  # bisect the channel ratio onto the MACs budget (starting near it)
            ratio = 0.3 if step == 0 else (lo + hi) / 2
            model, reference = build(name, x.shape[-1]), build(name, x.shape[-1])
            names = {m: n for n, m in model.named_modules()}
            t = time.perf_counter()
            pruner = tp.pruner.MagnitudePruner(model, x, importance=tp.importance.MagnitudeImportance(p=2),
                                               pruning_ratio=ratio, global_pruning=False,
                                               ignored_layers=tp_ignored(name, model))
            for group in pruner.step(interactive=True):
                zero_group(reference, names, group)
                group.prune()
            seconds = time.perf_counter() - t
            with torch.no_grad():
                macs = head_macs(model, x, dense.boxes) / dense.macs
            if best is None or abs(macs - target) < abs(best[0] - target):
                best = (macs, ratio, model, reference, seconds)
            lo, hi = (ratio, hi) if macs > target else (lo, ratio)
        macs, ratio, model, reference, row.prune_s = best
        row.notes.append(f"pruning_ratio={ratio:.3f}")
        _check(row, name, model, reference, x, dense, onnx)
    except Exception as exc:
        row.error = f"{type(exc).__name__}: {error_text(exc, 400, where=False)}"
        traceback.print_exc(limit=4)
    return row


# ------------------------------------------------------------------------------------------- driver

def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--tools", nargs="*", default=["graphprune", "torch-pruning"],
                        help="graphprune, torch-pruning, and dense (the unpruned detector's ONNX check only)")
    parser.add_argument("--merge", nargs="*", default=[], metavar="JSON",
                        help="earlier result files whose rows are kept (a later file's model/tool row replaces an earlier "
                             "one's; a row run here replaces both)")
    parser.add_argument("--onnx", action="store_true", help="try torch.onnx.export of each pruned detector")
    parser.add_argument("--out-name", default="detectors")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows: list[Row] = []
    for name in args.models:
        size = FIXED_SIZE.get(name, args.size)
        x = photo(size)
        dense = dense_of(name, x)
        if "dense" in args.tools:
            rows.append(run_dense(name, x, args.onnx))
            print(asdict(rows[-1]), flush=True)
        if "graphprune" in args.tools:
            rows.append(run_graphprune(name, x, dense, args.onnx))
            print(asdict(rows[-1]), flush=True)
        if "torch-pruning" in args.tools:
            rows.append(run_torch_pruning(name, x, dense, 0.5, args.onnx))
            print(asdict(rows[-1]), flush=True)
        _write(_merged(rows, args.merge), args)
    if not args.models:  # only re-render (and merge) earlier result files
        _write(_merged(rows, args.merge), args)


def dense_of(name: str, x: torch.Tensor) -> Dense:
    """The dense detector's boxes (proposals, detections) on ``x`` and its MACs on them."""
    with torch.no_grad():
        _, boxes = heads(build(name, x.shape[-1]), x)
    return Dense(boxes, head_macs(build(name, x.shape[-1]), x, boxes))


def _merged(rows: list[Row], files: list[str]) -> list[Row]:
    import json

    merged: dict[tuple[str, str], Row] = {}
    for row in [Row(**d) for f in files for d in json.loads(Path(f).read_text())["rows"]] + rows:
        merged[row.model, row.tool] = row  # a later file's row replaces an earlier one's; this run's, any file's
    order = {m: i for i, m in enumerate(MODELS)}
    tools = {"dense": 0, "graphprune": 1}
    return sorted(merged.values(), key=lambda r: (order.get(r.model, 99), tools.get(r.tool, 2)))


def render(rows: list[Row]) -> str:
    """The markdown page: the table, then the notes that read it."""
    headers = ["model", "tool", "MACs kept", "forward", "head max |diff|", "head scale", "ONNX", "prune s",
               "groups pruned", "error / notes"]
    table = markdown_table(headers, [[r.model, r.tool, fmt(r.macs_ratio), fmt(r.forward_ok), fmt(r.head_diff, ".1e"),
                                      fmt(r.head_scale, ".1f"), fmt(r.onnx), fmt(r.prune_s, ".1f"),
                                      fmt(r.groups_pruned), r.error or "; ".join(r.notes)] for r in rows])
    return f"# torchvision detectors at 0.5 MACs\n\n{table}\n\n{NOTES}"


def _write(rows: list[Row], args) -> None:
    text = render(rows)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / f"{args.out_name}.json", {"env": environment(), "size": args.size,
                                                  "rows": [asdict(r) for r in rows]})
    from graphprune.files import write_text_atomic

    write_text_atomic(RESULTS / f"{args.out_name}.md", text)


NOTES = """\
Command: `PYTHONPATH=. python bench/detectors.py --onnx --models … --tools …` per batch of rows, merged with
`--models --merge a.json b.json …` (shared 2-core CPU under heavy load: prune seconds are noisy).  Input:
grace_hopper.jpg (matplotlib sample data) at 320² (SSD300 at 300²), random weights, randomised BatchNorm statistics.

Notes:
- MACs kept = backbone + FPN + heads (FlopCounterMode), dense and pruned counted on the dense model's boxes: the
  box head on the proposals, the Mask / Keypoint R-CNN heads on the ≤100 detections the model feeds them (counted on
  all ~1000 proposals, as an earlier version did, graphprune's 0.5 budget read 0.474 / 0.895).
- head max |diff|: pre-NMS head outputs vs the original with the removed channels zeroed (same boxes); head scale
  = largest |output|. Torch-Pruning's FCOS is not mask-equivalent (0.54 of 6.1): it prunes GroupNorm channels one by
  one, which changes the group statistics; graphprune prunes whole groups there.
- Torch-Pruning with the ignore lists of its own torchvision test cannot reach 0.5 on the Faster R-CNNs, whose FPN /
  ROI heads it ignores (R50 0.572 at ratio 0.77, MobileNet 0.972: the ignored box head dominates).
- ONNX: every pruned detector exports (TorchScript exporter, opset 17) and runs in ONNX Runtime.  The outputs are
  post-NMS: "not informative" means both runtimes returned no box (random weights), so nothing was compared:
  9 of the 16 pruned rows; ORT matches PyTorch on all outputs of SSD300, Mask R-CNN (graphprune) and Keypoint
  R-CNN (both).  SSDlite's boxes and labels differ (2.7e+02) for both tools while
  its scores agree (3e-04): on random weights its 300 scores take ~20 distinct values, and which tied box / class
  each runtime's top-k keeps differs.  The *dense* torchvision SSDlite export shows the same (boxes 2.7e+02, scores
  2.6e-04, labels differ; 18 distinct scores of 300; with torchvision's own init instead of randomised BatchNorm:
  boxes 2.9e+02): export / ONNX Runtime tie order, not pruning.
"""


if __name__ == "__main__":
    main()

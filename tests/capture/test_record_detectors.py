"""torchvision detectors through the record front end: pruned, and equal to the masked original on the heads.

Small settings keep each test fast (few classes, few proposals); ``bench/detectors.py`` runs the full models.
"""
import copy
import warnings

import pytest
import torch
import torchvision

import graphprune
from graphprune.passes.masked_reference import _zero_parameters
from graphprune.testing import randomize_

D = torchvision.models.detection


def _heads(model, x, proposals=None):
    """Pre-NMS head outputs; the two-stage box head on ``proposals`` (default: the model's own)."""
    images, _ = model.transform(list(x))
    features = model.backbone(images.tensors)
    levels = list(features.values())
    if not hasattr(model, "rpn"):
        out = model.head(levels)
        return [out[k] for k in sorted(out)], None
    objectness, deltas = model.rpn.head(levels)
    if proposals is None:
        proposals = [p[:16] for p in model.rpn(images, features)[0]]
    roi = model.roi_heads
    scores, boxes = roi.box_predictor(roi.box_head(roi.box_roi_pool(features, proposals, images.image_sizes)))
    return [*objectness, *deltas, scores, boxes], proposals


def _prune_and_compare(model, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = graphprune.prune(model, 0.5, x, front_end="record", return_result=True)
    assert result.report.front_end == "record"
    assert result.report.macs_ratio <= 0.5 + 1e-6
    keep = result.plan.keep_mask(result.graph)
    pruned_groups = [g.name for g in result.graph.groups if not keep[g.units].all()]
    reference = copy.deepcopy(model)
    _zero_parameters(reference, result.graph, keep)
    pruned = result.model
    assert isinstance(pruned, type(model))  # the user's class: transform, anchors and post-processing kept
    with torch.no_grad():
        want, proposals = _heads(reference, x)
        got, _ = _heads(pruned, x, proposals)
        for a, b in zip(got, want):
            assert a.shape == b.shape
            assert torch.allclose(a, b, atol=1e-4 * max(1.0, float(b.abs().max()))), float((a - b).abs().max())
        detections = pruned(list(x))
    assert {"boxes", "scores", "labels"} <= set(detections[0])
    return pruned_groups


def test_ssdlite_prunes_backbone_and_heads():
    torch.manual_seed(0)
    model = randomize_(D.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5,
                                                       topk_candidates=50, detections_per_img=20).eval())
    model.transform.fixed_size = (160, 160)  # NOTE: anchors follow the feature maps; a quarter of the work
    groups = _prune_and_compare(model, torch.rand(1, 3, 160, 160))
    assert any(g.startswith("backbone.features") for g in groups)
    assert any(g.startswith("head.") or g.startswith("backbone.extra") for g in groups)


def test_fasterrcnn_mobilenet_prunes_backbone_fpn_and_box_head():
    torch.manual_seed(0)
    model = randomize_(D.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=5, min_size=160, max_size=160,
        rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=32, box_detections_per_img=10).eval())
    groups = _prune_and_compare(model, torch.rand(1, 3, 160, 160))
    assert any(g.startswith("backbone.body") for g in groups)
    assert any(g.startswith("backbone.fpn") for g in groups)  # FPN channels: through RoIAlign, proven coupled
    assert any(g.startswith("roi_heads.box_head") for g in groups)

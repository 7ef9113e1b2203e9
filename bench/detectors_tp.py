"""Torch-Pruning's side of ``bench/detectors.py``: its per-model ignore lists, and the masked reference of a group."""
from __future__ import annotations

import torch


# NOTE: Torch-Pruning's own torchvision test (tests/test_torchvision_models.py) lists these per model.
def tp_ignored(name: str, model) -> list:
    if name.startswith("fasterrcnn"):
        return [model.rpn.head.cls_logits, model.rpn.head.bbox_pred, model.backbone.fpn, model.roi_heads]
    if name.startswith("maskrcnn"):
        return [model.rpn.head.cls_logits, model.rpn.head.bbox_pred, model.roi_heads.box_predictor,
                model.roi_heads.mask_predictor]
    if name.startswith("keypointrcnn"):
        return [model.rpn.head.cls_logits, model.backbone.fpn.layer_blocks, model.rpn.head.bbox_pred,
                model.roi_heads.box_head.fc6, model.roi_heads.box_predictor, model.roi_heads.keypoint_predictor]
    if name.startswith("retinanet"):
        return [model.head.classification_head.cls_logits, model.head.regression_head.bbox_reg]
    if name.startswith("fcos"):
        return [model.head.classification_head.cls_logits, model.head.regression_head.bbox_reg,
                model.head.regression_head.bbox_ctrness]
    return [model.head]  # SSD, SSDlite


def zero_group(reference: torch.nn.Module, names: dict, group) -> None:
    """Zero, on ``reference``, the slices one Torch-Pruning group removes (out channels: weight rows, bias, BN
    statistics; in channels: weight columns)."""
    with torch.no_grad():
        for dep, idxs in group:
            module = dep.target.module
            if module not in names:
                continue
            twin = reference.get_submodule(names[module])
            handler = getattr(dep.handler, "__name__", str(dep.handler))
            idx = torch.as_tensor(list(idxs), dtype=torch.long)
            out = "out" in handler
            for attr in ("weight", "bias", "running_mean"):
                t = getattr(twin, attr, None)
                if not isinstance(t, torch.Tensor) or (attr != "weight" and not out and t.ndim == 1
                                                       and not isinstance(twin, torch.nn.modules.batchnorm._NormBase)):
                    continue
                transposed = isinstance(twin, torch.nn.ConvTranspose2d)
                axis = 0 if (out != transposed) or t.ndim == 1 else 1
                if isinstance(twin, torch.nn.Conv2d) and twin.groups > 1 and not out:
                    continue  # depthwise: its in channels are its out channels, zeroed there
                if axis < t.ndim:
                    t.index_fill_(axis, idx, 0.0)

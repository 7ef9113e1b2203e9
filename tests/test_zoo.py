"""One torchvision model per family, pruned with random plans and held to the oracle.

Small inputs keep CI fast; the full zoo at 224x224 against Torch-Pruning lives in ``bench/zoo.py``.
"""
import pytest
import torch
import torchvision

from graphprune.testing import check_rewrite, randomize_

FAMILIES = {
    "resnet18": {}, "vgg11_bn": {}, "densenet121": {}, "mobilenet_v2": {}, "mobilenet_v3_small": {},
    "efficientnet_b0": {}, "regnet_x_400mf": {}, "shufflenet_v2_x0_5": {}, "squeezenet1_1": {},
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False, "_size": 80},
    "mnasnet0_5": {}, "convnext_tiny": {}, "resnext50_32x4d": {},
    "vit_b_16": {"image_size": 32, "_size": 32},
    "swin_t": {},
    "maxvit_t": {"_size": 224},
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_random_plan_is_correct_and_exports(name, tmp_path):
    kwargs = dict(FAMILIES[name])
    size = kwargs.pop("_size", 64)
    torch.manual_seed(0)
    model = randomize_(torchvision.models.get_model(name, weights=None, **kwargs).eval())
    x = torch.randn(1, 3, size, size)
    r = check_rewrite(model, x, seed=0, p_keep=0.6, onnx_path=str(tmp_path / f"{name}.onnx"))
    assert r.planned_macs < 0.9 * r.graph.cost().macs, "the random plan removed almost nothing"
    assert len(r.graph.groups) > 0

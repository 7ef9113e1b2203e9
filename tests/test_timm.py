"""Networks from timm (nobody here wrote them), held to the same oracle at small inputs."""
import pytest
import timm  # in the test extra
import torch

from graphprune.testing import check_rewrite, randomize_

MODELS = {
    "vit_tiny_patch16_224": {"img_size": 32},   # timm attention: qkv reshape to heads + SDPA
    "res2net50_26w_4s": {},                     # split with a negative tuple index, per-piece convs
    "edgenext_xx_small": {},                    # conv/attention hybrid, positional encodings, layer scale
    "ghostnet_100": {},                         # concat of primary and cheap features, then slicing
    "mixnet_s": {},                             # mixed kernel sizes: split, per-group depthwise, concat
}


@pytest.mark.parametrize("name", list(MODELS))
def test_timm_model_random_plan_is_mask_equivalent(name):
    torch.manual_seed(0)
    kwargs = MODELS[name]
    model = randomize_(timm.create_model(name, pretrained=False, **kwargs).eval())
    size = kwargs.get("img_size", 64)
    r = check_rewrite(model, torch.randn(1, 3, size, size), seed=0, p_keep=0.6)
    assert r.planned_macs < 0.95 * r.graph.cost().macs

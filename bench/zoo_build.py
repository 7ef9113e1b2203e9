"""Models for ``bench/zoo.py``: build one by name with non-trivial weights, and its output shape."""
from __future__ import annotations

from common import ModelSpec
from zoo_hf import HF, first


def build(spec: ModelSpec):
    """(model with non-trivial norm statistics, example input) for a torchvision, ``timm:`` or ``hf:`` name."""
    from common import build_model, example_input
    from graphprune.testing import randomize_

    if spec.name.startswith(HF):
        import zoo_hf

        model, x = zoo_hf.build(spec.name)
        return randomize_(model), x
    return unzero_layers(randomize_(build_model(spec.name))), example_input(spec.input_shape)


def unzero_layers(model):
    """Give zero-initialised Linear / Conv weights small random values (N(0, 0.02)).

    NOTE: some timm heads start at zero (Hiera): the dense output is then identically 0 and the mask check would
    pass vacuously, so the zoo prunes a model whose output depends on its channels."""
    import torch

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)) and not m.weight.any():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.02)
    return model


def output_shape(model, x) -> tuple[int, ...]:
    import torch

    with torch.no_grad():
        return tuple(first(model(x)).shape)

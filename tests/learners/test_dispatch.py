"""prune(..., strategy=<learner>, train_data=...) dispatches to graphprune.learners."""
import pytest
import torch

import graphprune
import models


def test_prune_with_train_data_uses_the_learner(tiny_data):
    torch.manual_seed(0)
    model = models.build("resnet20", num_classes=10, in_channels=1)
    x = torch.zeros(1, 1, 8, 8)
    res = graphprune.prune(model, 0.5, x, strategy="hsn", train_data=tiny_data, return_result=True,
                           search_options={"epochs": 1, "steps_per_epoch": 1, "batch_size": 8, "progress": False})
    assert res.plan.info["learner"] == "hsn"
    assert 0.48 <= res.report.macs_ratio <= 0.5
    assert res.model.training == model.training


def test_unknown_learner_is_refused(tiny_data):
    with pytest.raises(ValueError, match="training-time learner"):
        graphprune.prune(torch.nn.Conv2d(1, 4, 3), 0.5, torch.zeros(1, 1, 8, 8), strategy="global",
                         train_data=tiny_data)

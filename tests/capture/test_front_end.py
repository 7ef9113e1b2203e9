"""Front-end choice: fx first, torch.export when fx cannot trace; both errors when neither can."""
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune.capture import capture
from graphprune.trace import TraceError


class _LoopsOverShape(nn.Module):
    """fx cannot iterate over a Proxy's shape; torch.export runs this forward as Python."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        n, c, h, w = [int(s) for s in x.shape]
        return self.b(torch.relu(self.a(x))).reshape(n, -1, h * w).mean(-1)


class _Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


X = torch.randn(1, 3, 6, 6)


def test_fx_is_tried_first():
    assert capture(_Plain().eval(), X).front_end == "fx"


def test_export_when_fx_cannot_trace_with_a_warning():
    with pytest.warns(UserWarning, match="captured with torch.export"):
        traced = capture(_LoopsOverShape().eval(), X)
    assert traced.front_end == "export"
    with pytest.raises(TraceError):
        capture(_LoopsOverShape().eval(), X, front_end="fx")


def test_every_reason_when_no_front_end_captures():
    class Data(nn.Module):
        def forward(self, x):
            if x.sum() > -1e9:  # data-dependent control flow: neither fx nor export captures it
                return x.view(7, -1)  # and it does not run, so recording fails too
            return x

    with pytest.raises(TraceError, match="(?s)torch.export could not capture it either.*the record front end could "
                                         "not capture it either"):
        capture(Data(), X)


def test_prune_reaches_the_export_front_end_and_stays_mask_equivalent():
    model = _LoopsOverShape().eval()
    with pytest.warns(UserWarning, match="torch.export"):
        result = graphprune.prune(model, 0.5, X, round_to=1, return_result=True)
    assert result.graph.traced.front_end == "export" and result.report.front_end == "export"
    ref = graphprune.masked_model(result.graph, result.plan.keep_mask(result.graph))
    assert torch.allclose(result.model(X), ref(X), atol=1e-6)


def test_keep_hooks_needs_fx():
    with pytest.raises(TraceError, match="keep_hooks=True needs module calls"):
        capture(_Plain().eval(), X, front_end="export", keep_hooks=True)

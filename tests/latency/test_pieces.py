"""Pieces: specs read from the graph, and ONNX / torch layers at reduced widths that agree in shape."""
import numpy as np
import onnxruntime as ort
import torch

from graphprune.latency.pieces import PieceSpec, node_pieces, onnx_piece, piece_inputs, torch_piece


def test_every_conv_and_linear_node_gets_a_spec(tiny):
    _, _, graph = tiny
    pieces, by_macs = node_pieces(graph, batch=4)
    specs = {p.node: p.spec for p in pieces}
    assert by_macs == [] and set(specs) == {"stem", "dw", "grouped", "mid", "head"}
    assert specs["stem"].prunable == ("out",)  # the model input's channels are frozen
    assert specs["dw"].mult == 1 and specs["dw"].prunable == ("out",)  # depthwise: groups follow width
    assert specs["grouped"].groups == 2 and specs["grouped"].full_in == 12
    assert specs["mid"].padding == "valid" and specs["mid"].stride == (2, 2)
    assert specs["head"].op == "linear" and specs["head"].prunable == ("in",)  # logits are frozen
    assert all(s.lead[0] == 4 for s in specs.values())  # the target's batch replaces the traced one


def test_repeated_layers_share_one_key(tiny):
    _, _, graph = tiny
    pieces, _ = node_pieces(graph)
    assert len({p.spec.key for p in pieces}) == len(pieces)  # all different here...
    twin = [p.spec for p in pieces if p.node == "stem"][0]
    assert twin.key == type(twin)(**vars(twin)).key  # ...and equal settings give equal keys


def test_onnx_and_torch_pieces_agree_in_shape_at_reduced_widths(tiny):
    _, _, graph = tiny
    pieces, _ = node_pieces(graph)
    for p in pieces:
        s = p.spec
        w_in = max(1, s.full_in - 3) if "in" in s.prunable else s.full_in
        w_out = max(s.mult or 1, s.full_out - 2 * (s.mult or 1)) if "out" in s.prunable else s.full_out
        if s.groups > 1 and not s.mult:
            w_out -= w_out % s.groups
        x = piece_inputs(s, w_in, w_out)
        session = ort.InferenceSession(onnx_piece(s, w_in, w_out).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        got = session.run(None, {"x": x})[0]
        with torch.no_grad():
            want = torch_piece(s, w_in, w_out)(torch.from_numpy(x))
        assert got.shape == tuple(want.shape), p.node
        assert np.isfinite(got).all()


def test_grouped_conv_pieces_keep_output_widths_divisible_by_the_groups():
    """RegNet-style grouped convs: any swept width must give an ONNX Runtime-valid conv (out % groups == 0)."""
    import onnxruntime as ort

    spec = PieceSpec("conv", (1,), (8, 8), (3, 3), (1, 1), (1, 1), (1, 1), groups=4, full_in=6, full_out=24,
                     prunable=("in", "out"))
    for w_out in (1, 10, 23, 24):
        c_in, c_out, groups = spec.layer(6, w_out)
        assert c_out % groups == 0 and c_out >= w_out
        session = ort.InferenceSession(onnx_piece(spec, 6, w_out).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        out = session.run(None, {session.get_inputs()[0].name: piece_inputs(spec, 6, w_out)})[0]
        assert out.shape[1] == c_out

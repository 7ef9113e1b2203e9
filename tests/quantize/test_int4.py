"""The int4 scheme: bit-exact with ONNX Runtime's blockwise quantiser, costed exactly, planned, refused on Conv."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

import graphprune
from graphprune.passes import rewrite
from graphprune.plan import PlanError
from graphprune.quantize import BitPlan, QuantBudget, apply_bitplan, fake_quant_model, zero_bit_model
from graphprune.quantize.int4 import Int4Scheme, fake_quant_weight_int4, int4_layer_bytes
from graphprune.quantize.joint import JointConfig, JointSpace, joint_search
from graphprune.importance import score_units
from quant_nets import EXAMPLE

MLP_INPUT = torch.zeros(1, 1, 8, 8)


class MLP(nn.Module):
    """Three Linear layers (64 -> 96 -> 80 -> 10): ragged blocks at block sizes 32 (80 = 2.5 blocks) and 64."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(64, 96), nn.Linear(96, 80), nn.Linear(80, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x.flatten(1))))))


def mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP().eval()


def _ort_dequantised(weight: torch.Tensor, scheme: Int4Scheme) -> np.ndarray:
    """What ORT's MatMulNBits quantiser stores for a Linear weight (out N, in K), unpacked and dequantised."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, \
        DefaultWeightOnlyQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=scheme.block_size, is_symmetric=scheme.symmetric)
    packed, scales, zero_points = DefaultWeightOnlyQuantizer(config).qbits_block_quant(
        np.ascontiguousarray(weight.numpy().T))
    n, k = weight.shape
    blocks = scales.shape[1]
    nibbles = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(n, blocks, -1).astype(np.float32)
    if scheme.symmetric:
        zp = np.full((n, blocks), 8.0, dtype=np.float32)
    else:
        zp = np.stack([zero_points & 0xF, zero_points >> 4], axis=-1).reshape(n, -1)[:, :blocks].astype(np.float32)
    return ((nibbles - zp[:, :, None]) * scales[:, :, None]).reshape(n, -1)[:, :k]


@pytest.mark.parametrize("scheme", [Int4Scheme(32, False), Int4Scheme(32, True), Int4Scheme(16, True),
                                    Int4Scheme(128, False)])
def test_fake_quant_weights_equal_onnx_runtime_bit_for_bit(scheme):
    g = torch.Generator().manual_seed(0)
    random = torch.randn(12, 100, generator=g)  # 100 inputs: a short last block at every block size
    random[1] = 0.0                             # an all-zero row (scale 0)
    random[2, :40] = torch.rand(40, generator=g)  # all-positive blocks
    ties = torch.randint(-15, 16, (6, 64), generator=g).float() / 2  # rounding ties and |max| == |min| blocks
    for weight in (random, ties):
        got = fake_quant_weight_int4(weight, scheme).numpy()
        np.testing.assert_array_equal(got, _ort_dequantised(weight, scheme))
        assert not np.array_equal(got, weight.numpy())


def test_bad_block_sizes_and_accuracy_levels_are_refused():
    for size in (8, 48, 0, True):
        with pytest.raises(PlanError, match="power of two >= 16"):
            Int4Scheme(size)
    with pytest.raises(PlanError, match="accuracy_level must be one of"):
        Int4Scheme(32, False, 2)


def test_plan_with_int4_round_trips_and_old_plans_still_load(tmp_path):
    graph = graphprune.inspect(mlp(), MLP_INPUT)
    unit_bits = np.full(graph.n_units, 8)
    unit_bits[graph.groups[0].units.start] = 0
    plan = BitPlan.from_unit_bits(graph, unit_bits, {"fc1": 4, "fc2": 32}, Int4Scheme(64, True, 4), budget="x")
    again = BitPlan.load(plan.save(tmp_path / "plan.json"))
    assert again == plan and again.int4 == Int4Scheme(64, True, 4) and again.bits_of("fc1") == 4
    body = json.loads(plan.to_json())
    assert body["int4"] == {"block_size": 64, "symmetric": True, "accuracy_level": 4}
    body["int4"].pop("accuracy_level")  # written before accuracy levels existed: level 0
    assert BitPlan.from_json(json.dumps(body)).int4 == Int4Scheme(64, True, 0)
    # a plan without int4 layers is written as before (no "int4" key) and one without the key reads as default
    int8_only = BitPlan.from_unit_bits(graph, unit_bits, {"fc2": 32}, Int4Scheme(64, True))
    assert "int4" not in json.loads(int8_only.to_json())
    assert BitPlan.from_json(int8_only.to_json()).int4 == Int4Scheme()
    body["int4"] = {"block_size": 24, "symmetric": True}
    with pytest.raises(PlanError, match="power of two"):
        BitPlan.from_json(json.dumps(body))


def test_int4_on_a_conv_layer_is_refused_by_name(net, calib, tmp_path):
    graph = graphprune.inspect(net, EXAMPLE)
    with pytest.raises(PlanError, match="'conv1' is a conv layer and asks for int4"):
        fake_quant_model(graph.traced.gm, calib, {"conv1": 4})
    plan = BitPlan.from_unit_bits(graph, np.full(graph.n_units, 8), {"down": 4})
    with pytest.raises(PlanError, match="'down' is a conv layer"):
        apply_bitplan(net, plan, EXAMPLE, calib_data=calib, out=tmp_path / "m.onnx")
    fake_quant_model(graph.traced.gm, calib, {"fc": 4})  # the Linear head may be int4


def test_size_counts_int4_blocks_scales_and_zero_points():
    graph = graphprune.inspect(mlp(), MLP_INPUT)
    for scheme in (Int4Scheme(32, False), Int4Scheme(64, True)):
        space = JointSpace(graph, score_units(graph, "l2"), QuantBudget.size(0.5), int4=scheme)
        keep = graph.full_keep()
        base = space.cost.size_bytes(keep, {})
        with_int4 = space.cost.size_bytes(keep, {"fc2": 4})
        assert with_int4 - base == pytest.approx(int4_layer_bytes(80, 96, scheme) - 80 * 96)
        # BOPs per MAC of fc2: int8 8·8; int4 4·32 with fp32 activations, 4·8 at accuracy_level 4
        macs = graph.node_macs(keep)[next(layer.node for layer in space.cost.layers if layer.name == "fc2")]
        delta = space.cost.bops(keep, {"fc2": 4}) - space.cost.bops(keep, {})
        assert delta == pytest.approx(macs * (4 * 32 - 64))
        level4 = JointSpace(graph, score_units(graph, "l2"), QuantBudget.size(0.5), int4=Int4Scheme(accuracy_level=4))
        assert level4.cost.bops(keep, {"fc2": 4}) - level4.cost.bops(keep, {}) == pytest.approx(macs * (4 * 8 - 64))
    # 96 inputs in blocks of 32: 3 blocks per row of 16 B, a 4 B scale each, 2 zero-point bytes per row
    assert int4_layer_bytes(80, 96, Int4Scheme(32, False)) == 80 * (3 * 16 + 3 * 4 + 2)
    # 96 inputs in blocks of 64: the second block is padded on disk
    assert int4_layer_bytes(80, 96, Int4Scheme(64, True)) == 80 * (2 * 32 + 2 * 4)


@pytest.mark.parametrize("budget", [QuantBudget.size(0.12), QuantBudget.size(0.2), QuantBudget.bops(0.05)])
def test_budgets_are_met_by_construction_with_int4_layers(budget):
    graph = graphprune.inspect(mlp(), MLP_INPUT)
    space = JointSpace(graph, score_units(graph, "l2"), budget)
    all_int4 = {"fc1": 4, "fc2": 4, "fc3": 4}
    for candidate in (space.uniform(all_int4), space.global_keep(all_int4)):
        assert candidate.cost <= space.allowed
    menus = {name: (8, 32, 4) for name in all_int4}
    rng = np.random.default_rng(0)
    best, scored = joint_search(space, lambda keep, bits: float(rng.random()), menus,
                                JointConfig(population=6, generations=2))
    assert all(c.cost <= space.allowed for c in scored)
    assert any(4 in c.bits.values() for c in scored)
    if budget.metric == "size":  # int4 halves the weights: at equal size it keeps more channels than int8
        assert space.global_keep(all_int4).keep.sum() > space.global_keep({}).keep.sum()


def test_a_pruned_channel_and_a_zero_bit_channel_quantise_alike_with_int4():
    """int4 blocks run along a Linear's inputs: the 0-bit view blocks over the kept inputs only, as the pruned
    layer does, so both simulations are the same model."""
    model = mlp(1)
    graph = graphprune.inspect(model, MLP_INPUT)
    keep = np.random.default_rng(2).random(graph.n_units) > 0.4
    for g in graph.groups:
        keep[g.units.start] = True
    calib = [torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    bits = {"fc1": 4, "fc2": 4, "fc3": 8}
    x = torch.randn(8, 1, 8, 8)
    for scheme in (Int4Scheme(16), Int4Scheme(16, accuracy_level=4)):  # level 4 also blocks the inputs
        pruned = fake_quant_model(rewrite(graph, keep), calib, bits, scheme)
        zero_bit = fake_quant_model(zero_bit_model(graph, keep), calib, bits, scheme)
        torch.testing.assert_close(zero_bit(x), pruned(x), atol=1e-5, rtol=1e-5)
    kept_in = graph.kept_indices(graphprune.depgraph.Dim("@fc2.weight", 1), keep)
    assert len(kept_in) < 96  # fc2 really lost inputs, so blocks really regrouped

"""The measured table model: calibration, monotonicity, menus, and a real ONNX Runtime build."""
import numpy as np
import pytest

from graphprune.latency import LatencyModel, TableLatencyModel, Target, build_latency_model
from graphprune.latency.pieces import node_pieces
from graphprune.latency.sweep import AxisSweep, PieceTiming, sweep_widths
from graphprune.latency import table as table_module
from graphprune.latency.table import CALIBRATION_FRACTIONS, LatencyTable
from graphprune.passes import rewrite
from graphprune.testing import random_keep


def _synthetic_table(graph, dense_ms, block=8, overhead=0.0):
    """Every piece priced exactly: overhead + full_ms · Π ceil(width / block) / ceil(full / block) per axis."""
    pieces, by_macs = node_pieces(graph)
    timings = {}
    for p in pieces:
        full_ms = 1e-6 * p.spec.full_in * p.spec.full_out
        sweeps = {}
        for axis in p.spec.prunable:
            full = p.spec.full(axis)
            widths, step, low = sweep_widths(full)
            ms = full_ms * np.ceil(widths / block) / np.ceil(full / block)
            sweeps[axis] = AxisSweep(widths.tolist(), (ms + overhead).tolist(), [0.0] * len(widths), step, low)
        timings[p.spec.key] = PieceTiming(full_ms + overhead, sweeps)
    return LatencyTable(Target(), pieces, timings, by_macs, dense_ms, overhead_ms=overhead)


def _raw_full(graph):
    return sum(1e-6 * p.spec.full_in * p.spec.full_out for p in node_pieces(graph)[0])


@pytest.mark.parametrize("extra", [0.5, -0.3])  # pieces under- / over-explain the dense time
def test_calibration_makes_full_keep_the_dense_time_and_keeps_predictions_monotone(tiny, extra):
    _, _, graph = tiny
    dense = _raw_full(graph) * (1 + extra)
    model = TableLatencyModel(graph, Target(), _synthetic_table(graph, dense))
    assert isinstance(model, LatencyModel)
    assert model.predict_ms(graph.full_keep()) == pytest.approx(dense, rel=1e-12)
    assert (model.scale == 1.0) == (extra > 0)
    rng = np.random.default_rng(0)
    for _ in range(5):  # remove units one at a time in random order: time never rises
        keep, before = graph.full_keep(), model.dense_ms
        for unit in rng.permutation(graph.n_units)[: graph.n_units - 1]:
            keep[unit] = False
            now = model.predict_ms(keep)
            assert 0 < now <= before + 1e-12
            before = now


def test_two_measurements_pin_dense_and_half_and_keep_predictions_monotone(tiny):
    _, _, graph = tiny
    table = _synthetic_table(graph, dense_ms=1.0)
    probe = TableLatencyModel(graph, Target(), table)
    x_half = probe._raw_ms(graph.class_sizes(probe.calibration_keep(0.5))) / probe.raw_full
    table.half_ms = 0.6 * x_half  # the whole model shrinks faster than its standalone pieces
    model = TableLatencyModel(graph, Target(), table)
    assert model.predict_ms(graph.full_keep()) == pytest.approx(1.0)
    assert model.predict_ms(model.calibration_keep(0.5)) == pytest.approx(table.half_ms)
    assert model.gamma > 1  # the whole model shrinks faster than the pieces' sum
    keep, before = graph.full_keep(), 1.0
    for unit in np.random.default_rng(2).permutation(graph.n_units)[:-1]:
        keep[unit] = False
        now = model.predict_ms(keep)
        assert 0 < now <= before + 1e-12
        before = now


def test_per_call_overhead_is_taken_out_of_every_piece(tiny):
    _, _, graph = tiny
    dense = 2 * _raw_full(graph)
    plain = TableLatencyModel(graph, Target(), _synthetic_table(graph, dense))
    padded = TableLatencyModel(graph, Target(), _synthetic_table(graph, dense, overhead=0.01))
    keep = random_keep(graph, np.random.default_rng(1), 0.5)
    assert padded.offset == pytest.approx(plain.offset)
    assert padded.predict_ms(keep) == pytest.approx(plain.predict_ms(keep))
    assert [padded.width_menu(i).tolist() for i in range(len(graph.groups))] == \
        [plain.width_menu(i).tolist() for i in range(len(graph.groups))]


def test_menu_holds_the_block_right_ends_in_units(tiny):
    _, _, graph = tiny
    model = TableLatencyModel(graph, Target(), _synthetic_table(graph, 1.0, block=8))
    stem = graph.groups.index(graph.group("stem.weight:0"))  # 12 units of 2 channels (see test_fake)
    assert model.width_menu(stem).tolist() == [4, 8, 12]
    for i, g in enumerate(graph.groups):
        menu = model.width_menu(i)
        assert menu[-1] == g.n_units and np.all(np.diff(menu) > 0) and menu[0] >= 1


def test_real_onnxruntime_build_measures_and_predicts(tiny, tmp_path):
    model, x, graph = tiny
    latency = build_latency_model(graph, Target("ort-cpu", threads=1), cache_dir=tmp_path, progress=False)
    table = latency.table
    assert table.measured == len({p.spec.key for p in table.pieces}) + 1 and table.reused == 0  # + overhead
    piece_ms = [table.timings[p.spec.key].full_ms for p in table.pieces]
    assert 0 < table.overhead_ms < 1.5 * min(piece_ms) and table.overhead_ms < max(piece_ms)  # a 1x1 layer
    assert all(t.full_ms > 0 and all(m > 0 for s in t.sweeps.values() for m in s.ms)
               for t in table.timings.values())
    assert latency.predict_ms(graph.full_keep()) == pytest.approx(latency.dense_ms)
    assert 0 < table.half_ms < table.dense_ms
    assert set(table.fraction_ms) == set(CALIBRATION_FRACTIONS) or graph.n_units == 0
    points = [(0.5, table.half_ms), *table.fraction_ms.items()]
    all_used = all(0 < ms < table.dense_ms for _, ms in points)  # NOTE: a tiny model's 0.8 may time as dense
    for f, ms in points:
        assert ms > 0
        keep_c = latency.calibration_keep(f)  # menu-rounded, like a prune's plan
        assert all(int(keep_c[g.units].sum()) in latency.width_menu(i) for i, g in enumerate(graph.groups))
        if latency.knots is not None and all_used:  # interpolation passes through every calibration model
            assert latency.predict_ms(keep_c) == pytest.approx(ms, rel=1e-9)
    keep = random_keep(graph, np.random.default_rng(0), 0.5)
    pruned = rewrite(graph, keep)
    dense_now, pruned_ms = latency.measure_ms([model, pruned], x)
    assert 0.2 < dense_now / latency.dense_ms < 5  # the same model, measured again (loose: shared CPU)
    predicted = latency.predict_ms(keep)
    print(f"tiny net ORT: dense {latency.dense_ms:.4f} ms, pruned predicted {predicted:.4f} ms, "
          f"measured {pruned_ms:.4f} ms, build {table.seconds:.2f} s")
    assert np.isfinite(predicted) and 0 < predicted <= latency.dense_ms
    assert 0.2 < predicted / pruned_ms < 5


def test_cpu_targets_time_pieces_at_a_small_batch_and_scale_them(tiny, tmp_path, monkeypatch):
    from graphprune.latency import table as table_module

    _, _, graph = tiny
    assert table_module.piece_batch(Target("ort-cpu", batch=32)) == table_module.PIECE_BATCH
    assert table_module.piece_batch(Target("ort-cpu", batch=2)) == 2
    assert table_module.piece_batch(Target("torch-cuda", batch=32)) == 32  # a small batch does not fill a GPU
    timed = []

    def fake_time_spec(spec, target):  # time ∝ images · MACs of the piece
        timed.append(spec.lead[0])
        full = spec.lead[0] * 1e-6 * spec.full_in * spec.full_out
        sweeps = {a: AxisSweep(*[[spec.full(a)], [full], [0.0]], 1, spec.full(a)) for a in spec.prunable}
        return PieceTiming(full, sweeps)

    monkeypatch.setattr(table_module, "time_spec", fake_time_spec)
    monkeypatch.setattr(table_module, "_measure_calibration",
                        lambda graph, target, keep_at: {"dense": 1.0, "half": None, "fractions": {}, "keeps": "menu"})
    table = table_module.measure_table(graph, Target("ort-cpu", batch=32), cache_dir=tmp_path, progress=False)
    assert table.piece_batch == table_module.PIECE_BATCH and table.piece_scale == 32 / table_module.PIECE_BATCH
    assert set(timed) == {table_module.PIECE_BATCH, 1}  # the pieces, and the 1x1 per-call overhead piece
    assert all(p.spec.lead[0] == table_module.PIECE_BATCH for p in table.pieces)
    model = TableLatencyModel(graph, Target("ort-cpu", batch=32), table)
    # the per-call overhead is paid once per piece call, whatever the batch: taken out before scaling
    expected = [(spec_ms - table.overhead_ms) * table.piece_scale
                for spec_ms in (table.timings[p.spec.key].full_ms for p in table.pieces)]
    assert model._full_ms == pytest.approx(expected, rel=1e-12)
    at_target_batch = [32e-6 * p.spec.full_in * p.spec.full_out for p in table.pieces]
    assert model._full_ms == pytest.approx(np.array(at_target_batch) - table.overhead_ms * table.piece_scale, rel=1e-9)


def test_calibration_fits_one_power_law_through_several_whole_models(tiny):
    """Points on y = x^1.5 give gamma 1.5; a lucky (fast) half model alone would steepen it, the others temper it."""
    _, _, graph = tiny
    table = _synthetic_table(graph, dense_ms=1.0)
    probe = TableLatencyModel(graph, Target(), table)
    ratio = {f: probe._raw_ms(graph.class_sizes(probe.calibration_keep(f))) / probe.raw_full
             for f in CALIBRATION_FRACTIONS}
    half = probe._raw_ms(graph.class_sizes(probe.calibration_keep(0.5))) / probe.raw_full
    table.half_ms, table.fraction_ms = half ** 1.5, {f: r ** 1.5 for f, r in ratio.items()}
    assert TableLatencyModel(graph, Target(), table).gamma == pytest.approx(1.5)
    table.half_ms = 0.8 * half ** 1.5  # the half model runs 20 % faster than the law
    alone = TableLatencyModel(graph, Target(), _synthetic_table(graph, 1.0))
    alone.table.half_ms = table.half_ms
    alone._calibrate()
    fitted = TableLatencyModel(graph, Target(), table)
    assert 1.5 < fitted.gamma < alone.gamma


def test_an_older_cache_entry_is_measured_again(tiny, tmp_path, monkeypatch):
    _, _, graph = tiny
    calls = []

    def fake(graph, target, keep_at):
        calls.append(keep_at(0.5))
        return {"dense": 2.0, "half": 1.0, "fractions": {"0.3": 0.5, "0.8": 1.6}, "keeps": "menu"}
    monkeypatch.setattr(table_module, "time_spec", lambda spec, target: PieceTiming(1.0, {}))
    monkeypatch.setattr(table_module, "_measure_calibration", fake)
    table_module.measure_table(graph, Target(), cache_dir=tmp_path, progress=False)
    cache = table_module.TimingCache.open(Target(), tmp_path)
    key = next(iter(cache.dense))
    cache.dense[key] = [2.0, 1.0]  # the entry an older graphprune wrote
    cache.save()
    table = table_module.measure_table(graph, Target(), cache_dir=tmp_path, progress=False)
    assert len(calls) == 2 and table.fraction_ms == {0.3: 0.5, 0.8: 1.6} and table.half_ms == 1.0
    assert calls[0].sum() < graph.n_units  # the calibration models are pruned ones
    table_module.measure_table(graph, Target(), cache_dir=tmp_path, progress=False)
    assert len(calls) == 2  # the new entry is reused


def test_piecewise_calibration_passes_through_every_model_and_stays_monotone(tiny):
    _, _, graph = tiny
    table = _synthetic_table(graph, dense_ms=2.0)
    probe = TableLatencyModel(graph, Target(), table)
    keeps = {f: probe.calibration_keep(f) for f in CALIBRATION_FRACTIONS}
    x = {f: probe._raw_ms(graph.class_sizes(k)) / probe.raw_full for f, k in keeps.items()}
    x_half = probe._raw_ms(graph.class_sizes(probe.calibration_keep(0.5))) / probe.raw_full
    # a measured curve no single power law fits: steep near full width, flat near the narrow end
    law = {f: 2.0 * (0.1 + 0.9 * v ** 2) for f, v in x.items()}
    table.half_ms, table.fraction_ms = 2.0 * (0.1 + 0.9 * x_half ** 2), law
    model = TableLatencyModel(graph, Target(), table)
    assert model.knots is not None
    for f, k in keeps.items():
        assert model.predict_ms(k) == pytest.approx(law[f], rel=1e-9)
    assert model.predict_ms(model.calibration_keep(0.5)) == pytest.approx(table.half_ms, rel=1e-9)
    assert model.predict_ms(graph.full_keep()) == pytest.approx(2.0, rel=1e-12)
    keep, before = graph.full_keep(), 2.0
    for unit in np.random.default_rng(3).permutation(graph.n_units)[:-1]:
        keep[unit] = False
        now = model.predict_ms(keep)
        assert 0 <= now <= before + 1e-12  # (this loop empties whole groups: 0 is reachable)
        before = now
    table.fraction_ms = {f: 1.99 for f in law}  # noise: narrow models measured above wider ones
    assert TableLatencyModel(graph, Target(), table).knots is None  # one least-squares law instead

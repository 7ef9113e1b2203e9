"""Runners: each runtime times prepared calls; thread settings are restored; bad targets are refused."""
import sys

import numpy as np
import pytest
import torch

from graphprune.latency import Target
from graphprune.latency import runners
from graphprune.latency.pieces import PieceSpec, onnx_piece, piece_inputs

SPEC = PieceSpec("conv", (1,), (8, 8), (3, 3), (1, 1), (1, 1), (1, 1), 1, 0, 8, 16, ("in", "out"))


@pytest.mark.parametrize("runtime", ["ort-cpu", "openvino-cpu"])
def test_onnx_runtimes_time_pieces_interleaved(runtime, tmp_path):
    if runtime == "openvino-cpu":
        pytest.importorskip("openvino")
    target = Target(runtime)
    calls = [runners.prepare_onnx(onnx_piece(SPEC, w, 16), [piece_inputs(SPEC, w, 16)], target, tmp_path)
             for w in (4, 8)]
    medians, errors = runners.time_interleaved_stats(calls, target, warmup=1, repeats=3)
    assert len(medians) == 2 and all(m > 0 for m in medians) and all(e >= 0 for e in errors)


def test_torch_cpu_sets_threads_only_while_timing():
    before = torch.get_num_threads()
    seen = []
    target = Target("torch-cpu", threads=1)
    call = runners.prepare_torch(torch.nn.Linear(4, 4), [torch.randn(2, 4)], target)
    ms = runners.time_interleaved([lambda: seen.append(torch.get_num_threads()) or call()], target, repeats=2)
    assert ms[0] > 0 and set(seen) == {1} and torch.get_num_threads() == before


def test_measure_ms_replaces_the_batch_and_leaves_the_module_alone():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3)).train()
    ms = runners.measure_ms([model, model], torch.randn(2, 4), Target("torch-cpu", batch=5), repeats=2)
    assert len(ms) == 2 and min(ms) > 0 and model.training
    x = torch.arange(6.0).reshape(2, 3)
    assert runners.with_batch(x, 3)[0].tolist() == [[0, 1, 2], [3, 4, 5], [0, 1, 2]]
    ort_ms = runners.measure_ms([model], torch.randn(2, 4), Target("ort-cpu", batch=3), repeats=2)
    assert ort_ms[0] > 0


def test_missing_openvino_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ImportError, match="pip install 'graphprune\\[latency\\]'"):
        runners.prepare_onnx(onnx_piece(SPEC, 8, 16), [piece_inputs(SPEC, 8, 16)], Target("openvino-cpu"), ".")


def test_unsupported_settings_are_refused():
    with pytest.raises(ValueError, match="ort-cpu times fp32 models only"):
        runners.prepare_onnx(onnx_piece(SPEC, 8, 16), [np.zeros(1)], Target("ort-cpu", precision="bf16"))
    with pytest.raises(ValueError, match="does not run ONNX"):
        runners.prepare_onnx(onnx_piece(SPEC, 8, 16), [np.zeros(1)], Target("torch-cpu"))
    with pytest.raises(ValueError, match="unknown latency target runtime"):
        Target("tpu")


def test_ort_timing_sessions_do_not_spin():
    """Interleaved sessions with idle spinning pools steal each other's cores (runners.ort_session_options)."""
    from graphprune.latency import Target
    from graphprune.latency.runners import ort_session_options
    from graphprune.quantize.ort_session import cpu_session  # noqa: F401  (same rule for the quantize timings)

    opts = ort_session_options(Target("ort-cpu", threads=2))
    assert opts.intra_op_num_threads == 2
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_rounds_are_sized_to_the_time_they_take():
    """Long calls (batch 32, big models) get fewer rounds, never fewer than MIN_REPEATS; short ones all of them."""
    assert runners.sized_rounds(15, 0.01, 60.0) == 15
    assert runners.sized_rounds(15, 6.0, 60.0) == 10
    assert runners.sized_rounds(15, 20.0, 60.0) == runners.MIN_REPEATS
    assert runners.sized_rounds(3, 20.0, 60.0) == 3  # a caller asking for fewer than the floor gets what it asked
    assert runners.sized_rounds(15, 20.0, None) == 15


def test_long_calls_are_timed_in_fewer_rounds_with_one_warm_up(monkeypatch):
    """Counted calls of a fake 'slow' model: a one-second-per-round clock makes 15 rounds cost 15 s."""
    clock = {"t": 0.0}
    monkeypatch.setattr(runners.time, "perf_counter", lambda: clock["t"])
    runs = [0, 0]

    def call(i, seconds):
        def run():
            runs[i] += 1
            clock["t"] += seconds
        return run
    calls = [call(0, 1.0), call(1, 0.5)]  # one round: 1.5 s
    runners.time_interleaved_stats(calls, Target("ort-cpu"), warmup=2, repeats=15, max_seconds=9.0)
    assert runs == [1 + 6, 1 + 6]  # one warm-up (the calls are long), 9 s // 1.5 s = 6 rounds
    runs[:] = [0, 0]
    runners.time_interleaved_stats(calls, Target("ort-cpu"), warmup=2, repeats=15, max_seconds=None)
    assert runs == [1 + 15, 1 + 15]
    short = [call(0, 0.01), call(1, 0.01)]
    runs[:] = [0, 0]
    runners.time_interleaved_stats(short, Target("ort-cpu"), warmup=2, repeats=15, max_seconds=9.0)
    assert runs == [2 + 15, 2 + 15]  # short calls: both warm-ups, every round (0.01 s >= MIN_SAMPLE_S: no loops)

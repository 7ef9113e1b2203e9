"""The timing cache: a second build reuses every timing; a changed target or machine does not."""
import json

import pytest

from graphprune.latency import Target, build_latency_model
from graphprune.latency import cache as cache_mod
from graphprune.latency import runners


@pytest.fixture
def counted(monkeypatch):
    """Count runner calls (piece batches and whole-model measurements), still timing for real."""
    calls = {"pieces": 0, "models": 0}
    stats, measure = runners.time_interleaved_stats, runners.measure_ms

    def count_stats(*a, **k):
        calls["pieces"] += 1
        return stats(*a, **k)

    def count_measure(*a, **k):
        calls["models"] += 1
        return measure(*a, **k)
    monkeypatch.setattr(runners, "time_interleaved_stats", count_stats)
    monkeypatch.setattr(runners, "measure_ms", count_measure)
    return calls


def test_second_build_is_read_from_the_cache(tiny, tmp_path, counted):
    _, _, graph = tiny
    first = build_latency_model(graph, Target(), cache_dir=tmp_path, progress=False)
    assert counted["pieces"] > 0 and counted["models"] == 1
    counted.update(pieces=0, models=0)
    second = build_latency_model(graph, Target(), cache_dir=tmp_path, progress=False)
    assert counted == {"pieces": 0, "models": 0}
    assert second.table.reused == first.table.measured and second.table.measured == 0
    assert second.dense_ms == first.dense_ms
    assert second.predict_ms(graph.full_keep()) == first.predict_ms(graph.full_keep())


def test_changed_target_or_fingerprint_does_not_reuse(tiny, tmp_path, counted, monkeypatch):
    _, _, graph = tiny
    build_latency_model(graph, Target(threads=1), cache_dir=tmp_path, progress=False)
    counted.update(pieces=0, models=0)
    build_latency_model(graph, Target(threads=2), cache_dir=tmp_path, progress=False)
    assert counted["pieces"] > 0 and counted["models"] == 1
    assert len(list(tmp_path.glob("*.json"))) == 2
    counted.update(pieces=0, models=0)
    real = cache_mod.machine_fingerprint
    monkeypatch.setattr(cache_mod, "machine_fingerprint", lambda t: {**real(t), "cpu": "another CPU"})
    build_latency_model(graph, Target(threads=1), cache_dir=tmp_path, progress=False)
    assert counted["pieces"] > 0


def test_cache_file_is_json_with_its_fingerprint_and_env_location(tiny, tmp_path, monkeypatch):
    _, _, graph = tiny
    monkeypatch.setenv("GRAPHPRUNE_CACHE", str(tmp_path))
    build_latency_model(graph, Target(), progress=False)
    [path] = list((tmp_path / "latency").glob("ort-cpu-t1-b1-fp32-*.json"))
    data = json.loads(path.read_text())
    assert data["fingerprint"]["target"] == "ort-cpu-t1-b1-fp32"
    assert data["fingerprint"]["runtime"].startswith("onnxruntime-")
    assert data["pieces"] and len(data["dense"]) == 1


def test_damaged_cache_file_is_remeasured(tiny, tmp_path, counted):
    _, _, graph = tiny
    build_latency_model(graph, Target(), cache_dir=tmp_path, progress=False)
    [path] = list(tmp_path.glob("*.json"))
    path.write_text("{not json")
    counted.update(pieces=0, models=0)
    build_latency_model(graph, Target(), cache_dir=tmp_path, progress=False)
    assert counted["pieces"] > 0 and json.loads(path.read_text())["pieces"]

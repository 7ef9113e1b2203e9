"""ONNX exporters: the torch.export-based one (``dynamo=True``, graphprune's default) vs the TorchScript one.

For ResNet-18, MobileNetV2 and ViT-B/16 (torchvision, ``weights=None``, fx front end) and a Hugging Face BERT
(random tiny config, ``front_end="export"``: an aten GraphModule), each pruned to 0.5 of its MACs:

1. **export time**: ``graphprune.export.export_onnx(pruned, x, path, exporter=...)`` for each exporter, alternated
   (T D T D …) ``--repeats`` times, median CPU seconds of the process (and wall seconds).  A dynamo export on a
   one-layer model runs first and is reported apart (``dynamo_first_call_cpu_s``: imports and the exporter's own
   set-up, paid once per process).
2. **the file**: opset, input shape (fixed or symbolic dims), node count, size; ONNX Runtime vs PyTorch over every
   output (``check_onnx``); ORT latency of the two files timed interleaved (``latency.runners``, 1 thread, the
   fastest of 3 sessions) — whether the exporter changes the speed of what is deployed.
3. **consumers of the file**: OpenVINO reads and compiles the dynamo file (fp32) and its output is compared with
   PyTorch's; ``onnxruntime.quantization.quantize_dynamic`` (int8 weights) quantises it and ORT runs the result
   (relative difference reported: int8 is not meant to be equal).

Writes ``bench/results/onnx_exporters.json`` and ``.md``.

    python bench/onnx_exporters.py                     # all four models, 3 repeats
    python bench/onnx_exporters.py --models resnet18 --repeats 1
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment, error_text, fmt, markdown_table, write_json  # noqa: E402

import graphprune  # noqa: E402
from graphprune.export.onnx import check_onnx, export_onnx, flatten_outputs  # noqa: E402
from graphprune.latency import runners  # noqa: E402
from graphprune.latency.model import Target  # noqa: E402
from graphprune.testing import randomize_  # noqa: E402

MODELS = ("resnet18", "mobilenet_v2", "vit_b_16", "hf-bert")
EXPORTERS = ("torchscript", "dynamo")
BUDGET = 0.5


@dataclass
class ExporterRun:
    """One exporter on one pruned model."""

    seconds: list[float] = field(default_factory=list)  # wall, as ``OnnxFile.seconds``
    cpu_seconds: list[float] = field(default_factory=list)  # this process's CPU time: steadier on a shared machine
    error: str = ""
    opset: int | None = None
    input_shape: list = field(default_factory=list)  # ints are fixed dims, strings symbolic
    nodes: int | None = None
    megabytes: float | None = None
    ort_max_abs_diff: float | None = None
    ort_max_rel_diff: float | None = None
    ort_ms: float | None = None

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def median_cpu_s(self) -> float | None:
        return statistics.median(self.cpu_seconds) if self.cpu_seconds else None


@dataclass
class ExporterRow:
    model: str
    front_end: str
    macs_ratio: float | None = None
    runs: dict[str, ExporterRun] = field(default_factory=dict)
    openvino_max_rel_diff: float | None = None
    openvino_error: str = ""
    int8_max_rel_diff: float | None = None
    int8_error: str = ""
    error: str = ""

    @property
    def slowdown(self) -> float | None:
        """dynamo / TorchScript, on CPU seconds."""
        t, d = (self.runs.get(e) for e in EXPORTERS)
        return d.median_cpu_s / t.median_cpu_s if t and d and t.median_cpu_s and d.median_cpu_s else None


# ---- models ----------------------------------------------------------------------------------------------
def _nonzero_heads_(model: torch.nn.Module) -> torch.nn.Module:
    """torchvision's ViT head starts at zeros: every output would be 0 and every comparison trivially equal."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and not m.weight.any():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.02)
    return model


def build(name: str) -> tuple[torch.nn.Module, torch.Tensor, str]:
    """(dense model in eval mode, example input, front end)."""
    torch.manual_seed(0)
    if name == "hf-bert":
        import transformers

        cfg = transformers.BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=512, max_position_embeddings=64, num_labels=3)
        return transformers.BertForSequenceClassification(cfg).eval(), torch.randint(0, 1000, (1, 32)), "export"
    import torchvision

    model = torchvision.models.get_model(name, weights=None).eval()
    return _nonzero_heads_(randomize_(model)), torch.randn(1, 3, 224, 224), "fx"


# ---- measurements ------------------------------------------------------------------------------------------
def _describe(run: ExporterRun, path: Path) -> None:
    import onnx

    proto = onnx.load(str(path))
    run.opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    run.input_shape = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    run.nodes = len(proto.graph.node)
    run.megabytes = path.stat().st_size / 1e6


def _ort_ms(paths: list[Path], x: torch.Tensor) -> list[float]:
    target = Target("ort-cpu", threads=1, batch=x.shape[0])
    calls = [runners.prepare_onnx(p, [x.numpy()], target) for _ in range(3) for p in paths]
    return runners.fastest_session(*runners.time_interleaved_stats(calls, target, repeats=10), 3)[0]


def _rel_diff(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


def _openvino(row: ExporterRow, path: Path, x: torch.Tensor, want: np.ndarray) -> None:
    try:
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                               "INFERENCE_NUM_THREADS": 1})
        got = compiled([x.numpy()])[compiled.outputs[0]]
        row.openvino_max_rel_diff = _rel_diff(np.asarray(got), want)
    except Exception as exc:  # noqa: BLE001 — recorded in the table
        row.openvino_error = error_text(exc, where=False)


def _int8(row: ExporterRow, path: Path, folder: Path, x: torch.Tensor, want: np.ndarray) -> None:
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        out = folder / "int8.onnx"
        quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8)
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        row.int8_max_rel_diff = _rel_diff(np.asarray(got), want)
    except Exception as exc:  # noqa: BLE001
        row.int8_error = error_text(exc, where=False)


def measure(name: str, repeats: int) -> ExporterRow:
    model, x, front_end = build(name)
    row = ExporterRow(name, front_end)
    try:
        result = graphprune.prune(model, BUDGET, x, front_end=front_end, return_result=True)
    except Exception as exc:  # noqa: BLE001
        row.error = error_text(exc)
        return row
    pruned, row.macs_ratio = result.model, result.report.macs_ratio
    with torch.no_grad():
        want = flatten_outputs(pruned(x))[0].numpy()
    with tempfile.TemporaryDirectory(prefix="gp-onnx-exporters-") as tmp:
        paths = {e: Path(tmp) / f"{e}.onnx" for e in EXPORTERS}
        row.runs = {e: ExporterRun() for e in EXPORTERS}
        for _ in range(repeats):
            for e in EXPORTERS:
                run = row.runs[e]
                if run.error:
                    continue
                try:
                    cpu = time.process_time()
                    run.seconds.append(export_onnx(pruned, x, paths[e], exporter=e).seconds)
                    run.cpu_seconds.append(time.process_time() - cpu)
                except Exception as exc:  # noqa: BLE001
                    run.error = error_text(exc, where=False)
        done = [e for e in EXPORTERS if row.runs[e].seconds]
        for e in done:
            run = row.runs[e]
            _describe(run, paths[e])
            check = check_onnx(pruned, x, paths[e])
            run.ort_max_abs_diff, run.ort_max_rel_diff = check.max_abs_diff, check.max_rel_diff
        for e, ms in zip(done, _ort_ms([paths[e] for e in done], x) if done else []):
            row.runs[e].ort_ms = ms
        if "dynamo" in done:
            _openvino(row, paths["dynamo"], x, want)
            _int8(row, paths["dynamo"], Path(tmp), x, want)
    return row


def first_dynamo_call_cpu_s() -> float:
    """CPU seconds of the process's first dynamo export (a one-layer model): the set-up each process pays once."""
    with tempfile.TemporaryDirectory() as tmp:
        t = time.process_time()
        export_onnx(torch.nn.Linear(4, 4), torch.randn(1, 4), Path(tmp) / "warm.onnx", exporter="dynamo")
        return time.process_time() - t


# ---- output ------------------------------------------------------------------------------------------------
def _cell(row: ExporterRow, exporter: str, what: str) -> str:
    run = row.runs.get(exporter)
    if run is None or run.error:
        return "failed" if run else "—"
    if what == "time":
        return f"{fmt(run.median_cpu_s, '.2f')} ({fmt(run.median_s, '.1f')})"
    if what == "file":
        return f"opset {run.opset}, {run.nodes} nodes, input {run.input_shape}"
    if what == "ort":
        return f"{run.ort_max_abs_diff:.1e} / {run.ort_max_rel_diff:.1e}"
    return fmt(run.ort_ms, ".2f")


def render(rows: list[ExporterRow], meta: dict) -> str:
    head = ["model (front end)", "MACs kept", "TorchScript CPU s (wall)", "dynamo CPU s (wall)", "dynamo / TS (CPU)",
            "TS file", "dynamo file",
            "ORT |diff| abs / rel (TS)", "(dynamo)", "ORT ms TS", "ORT ms dynamo", "OpenVINO rel diff (dynamo)",
            "int8 ORT rel diff (dynamo)"]
    body = [[f"{r.model} ({r.front_end})", fmt(r.macs_ratio), _cell(r, "torchscript", "time"),
             _cell(r, "dynamo", "time"), fmt(r.slowdown, ".1f"), _cell(r, "torchscript", "file"),
             _cell(r, "dynamo", "file"), _cell(r, "torchscript", "ort"), _cell(r, "dynamo", "ort"),
             _cell(r, "torchscript", "ms"), _cell(r, "dynamo", "ms"),
             r.openvino_error or fmt(r.openvino_max_rel_diff, ".1e"), r.int8_error or fmt(r.int8_max_rel_diff, ".3f")]
            for r in rows]
    errors = [f"- {r.model}: {r.error or ''} {' '.join(f'{e}: {x.error}' for e, x in r.runs.items() if x.error)}"
              for r in rows if r.error or any(x.error for x in r.runs.values())]
    return "\n".join([
        "# ONNX exporters: torch.export-based (dynamo, the default) vs TorchScript (fallback)", "",
        f"Command: `{meta['command']}` ({meta['environment']['date']}, torch {meta['environment']['torch']}, "
        f"onnxruntime {meta['environment']['onnxruntime']}, 1 torch thread, 2 shared CPU cores).", "",
        f"Each pruned model (budget {BUDGET} of MACs) exported {meta['repeats']}x per exporter, alternated; median "
        "CPU seconds of the process (wall seconds in brackets: inflated by whatever else shares the cores, load "
        f"{meta['load_average']:.0f} on 2 cores during this run). The process's first dynamo export (a one-layer "
        f"model) took {meta['dynamo_first_call_cpu_s']:.2f} CPU s and is not in the medians. ORT latency: the two "
        "files timed interleaved, 1 thread, batch 1, fastest of 3 sessions.", "",
        markdown_table(head, body), "", *(["Failures:", *errors, ""] if errors else []), *_reading(rows)])


def _reading(rows: list[ExporterRow]) -> list[str]:
    """What the table says, in numbers taken from it."""
    slow = [r.slowdown for r in rows if r.slowdown]
    both = [r for r in rows if all(r.runs.get(e) and r.runs[e].ort_ms for e in EXPORTERS)]
    ms = [abs(r.runs["dynamo"].ort_ms / r.runs["torchscript"].ort_ms - 1) for r in both]
    if not slow or not ms:
        return []
    return ["Reading:", "",
            f"- The dynamo exporter costs {min(slow):.0f}-{max(slow):.0f}x the TorchScript exporter's CPU time here; "
            "both write opset 18 (graphprune's default opset is now 18; TorchScript files were opset 17 before) "
            "with every dim fixed to the example input (no dynamic axes, as before), and both files equal PyTorch "
            "in ONNX Runtime to float precision.",
            f"- ONNX Runtime runs the two files at the same speed (largest difference {max(ms):.0%}, within the noise "
            "of a shared machine), though the dynamo files have as many or fewer nodes.",
            "- `latency.runners.measure_ms` (dense + pruned whole models, a few calls per latency-budgeted prune "
            "and one per `graphprune prune --onnx` job) keeps the default exporter: it times the graph that is "
            "shipped, at the cost of one dynamo export (the column above) per model per call, and does not rest "
            "on the deprecated exporter. The per-layer latency pieces never went through a torch exporter "
            "(`latency/pieces.py` "
            "builds them with `onnx.helper`), so their speed is unchanged.", ""]


def rows_from_json(payload: dict) -> list[ExporterRow]:
    rows = []
    for data in payload["rows"]:
        fields = {k: v for k, v in data.items() if k in ExporterRow.__dataclass_fields__}
        fields["runs"] = {e: ExporterRun(**{k: v for k, v in run.items() if k in ExporterRun.__dataclass_fields__})
                          for e, run in data["runs"].items()}
        rows.append(ExporterRow(**fields))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out-name", default="onnx_exporters")
    parser.add_argument("--render", action="store_true", help="re-render the .md from the .json only")
    args = parser.parse_args(argv)
    if args.render:
        payload = json.loads((RESULTS / f"{args.out_name}.json").read_text())
        (RESULTS / f"{args.out_name}.md").write_text(render(rows_from_json(payload), payload["meta"]))
        return
    torch.set_num_threads(1)
    meta = {"command": "python bench/onnx_exporters.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "environment": environment(), "repeats": args.repeats, "dynamo_first_call_cpu_s": first_dynamo_call_cpu_s()}
    rows = []
    for name in args.models:
        rows.append(measure(name, args.repeats))
        r = rows[-1]
        print(f"{name:14s} TS {_cell(r, 'torchscript', 'time')} s  dynamo {_cell(r, 'dynamo', 'time')} s  "
              f"x{fmt(r.slowdown, '.1f')}  {r.error}", flush=True)
    meta["load_average"] = os.getloadavg()[0]
    payload = {"meta": meta, "rows": [{**asdict(r), "slowdown": r.slowdown,
                                       "median_s": {e: x.median_s for e, x in r.runs.items()},
                                       "median_cpu_s": {e: x.median_cpu_s for e, x in r.runs.items()}} for r in rows]}
    write_json(RESULTS / f"{args.out_name}.json", payload)
    text = render(rows, meta)
    (RESULTS / f"{args.out_name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

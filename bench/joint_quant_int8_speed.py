"""Why is pruned MobileNetV2 int8 slower than pruned fp32 at small uniform sizes?  Build, time, profile.

    python bench/joint_quant_int8_speed.py build --work /tmp/qlat/speed            # compress (no timing)
    /work/wt/quiet python bench/joint_quant_int8_speed.py time --work /tmp/qlat/speed
    /work/wt/quiet python bench/joint_quant_int8_speed.py profile --work /tmp/qlat/speed

``build`` writes, per (size budget, width step), the pruned fp32 ONNX file and its int8 QDQ file
(``compress(strategy="uniform", quantize="int8")`` from ``checkpoints/mobilenetv2.pt``, no fine-tune:
timing does not depend on the weights).  ``time`` times every file interleaved with the dense fp32 one
(ORT CPU, 1 thread, batch 1).  ``profile`` runs ORT's profiler on each file and sums kernel time per op
type (and for Conv / QLinearConv per kind: depthwise, 1x1, other).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from joint_quant import EXAMPLE  # noqa: E402

import graphprune  # noqa: E402
from graphprune.data import fashion_mnist  # noqa: E402
from graphprune.export import export_onnx  # noqa: E402
from graphprune.files import write_text_atomic  # noqa: E402
from graphprune.quantize import QuantBudget  # noqa: E402
from graphprune.quantize.ort_ptq import interleaved_ms  # noqa: E402
from graphprune.train import load_checkpoint, make_loader  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def build(work: Path, budgets: list[float], steps: list[str]) -> None:
    model = load_checkpoint(REPO / "checkpoints" / "mobilenetv2.pt").build().eval()
    train = fashion_mnist("train", subset=128, stratified=True, seed=0)
    calib = [b for _, b in zip(range(1), make_loader(train, 64, seed=0))]
    work.mkdir(parents=True, exist_ok=True)
    export_onnx(model, EXAMPLE, work / "dense.fp32.onnx", exporter="torchscript")
    for budget in budgets:
        for step in steps:
            round_to = step if step == "auto" else int(step)
            r = graphprune.compress(model, QuantBudget.size(budget), EXAMPLE, quantize="int8", calib_data=calib,
                                    strategy="uniform", round_to=round_to, exporter="torchscript",
                                    out=work / f"u{budget:.2f}-r{step}.int8.onnx")
            print(f"{budget} r{step}: size {r.report.size_ratio:.3f} macs {r.report.macs_ratio:.3f}", flush=True)


def files(work: Path) -> list[Path]:
    return sorted(p for p in work.glob("u*.onnx"))


def time_all(work: Path, rounds: int, out: Path | None) -> None:
    paths = [work / "dense.fp32.onnx", *files(work)]
    load = os.getloadavg()[0]
    ms = interleaved_ms(paths, EXAMPLE, rounds=rounds)
    rows = {p.name: {"ms": m, "vs_dense_fp32": m / ms[0]} for p, m in zip(paths, ms)}
    for name, row in rows.items():
        print(f"{name:36s} {row['ms']:.3f} ms  {row['vs_dense_fp32']:.3f}")
    print(f"load {load:.2f} -> {os.getloadavg()[0]:.2f}")
    if out:
        write_text_atomic(out, json.dumps({"load": [load, os.getloadavg()[0]], "rows": rows}, indent=1))


def profile(path: Path, runs: int) -> dict[str, float]:
    """Mean µs per inference by op kind (ORT profiler, kernel events)."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    group = {}
    for n in proto.graph.node:
        if n.op_type in ("Conv", "QLinearConv", "ConvInteger"):
            g = next((a.i for a in n.attribute if a.name == "group"), 1)
            group[n.name] = g
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.enable_profiling = True
    opts.profile_file_prefix = str(path.with_suffix("")) + "-prof"
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {s.get_inputs()[0].name: EXAMPLE.numpy()}
    for _ in range(20):
        s.run(None, feed)
    for _ in range(runs):
        s.run(None, feed)
    prof = s.end_profiling()
    events = json.loads(Path(prof).read_text())
    Path(prof).unlink()
    # NOTE: the first 20 runs are warm-up; keep the kernel events of the last ``runs`` runs only
    runs_seen = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start = runs_seen[-runs]["ts"]
    total = collections.Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < start:
            continue
        op = e["args"].get("op_name", "?")
        node = e["name"][:-len("_kernel_time")]
        if op in ("Conv", "QLinearConv", "FusedConv", "NhwcFusedConv", "ConvInteger", "QLinearConvNhwc"):
            op += "/dw" if _is_dw(e) else ""
        total[op] += e["dur"]
    total["model_run"] = sum(e["dur"] for e in runs_seen[-runs:])
    return {k: v / runs for k, v in total.items()}


def _is_dw(event: dict) -> bool:
    """Depthwise: the weight's second dim is 1 and the op has more than one input channel."""
    shapes = event["args"].get("input_type_shape", [])
    try:
        # NOTE: QLinearConv's inputs are x, x_scale, x_zp, w, ...: the weight is the fourth
        w = list(shapes[1].values())[0] if "QLinear" not in event["args"]["op_name"] else list(shapes[3].values())[0]
        x = list(shapes[0].values())[0]
        return len(w) == 4 and w[1] == 1 and x[1] > 1
    except (IndexError, KeyError, TypeError):
        return False


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["build", "time", "profile"])
    p.add_argument("--work", default="/tmp/qlat/speed")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.15, 0.10])
    p.add_argument("--steps", nargs="+", default=["auto"])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--json")
    a = p.parse_args()
    work = Path(a.work)
    if a.cmd == "build":
        build(work, a.budgets, a.steps)
    elif a.cmd == "time":
        time_all(work, a.rounds, Path(a.json) if a.json else None)
    else:
        out = {}
        for path in [work / "dense.fp32.onnx", *files(work)]:
            out[path.name] = profile(path, a.runs)
            top = sorted(out[path.name].items(), key=lambda kv: -kv[1])
            print(path.name, " ".join(f"{k}={v:.0f}" for k, v in top[:12]), flush=True)
        if a.json:
            write_text_atomic(Path(a.json), json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

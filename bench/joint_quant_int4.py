"""int4 weight-only Linear layers (ORT MatMulNBits) vs int8 and fp32, on a Linear-heavy model (Fashion-MNIST MLP).

Model: an MLP 784-1024-1024-10 (1.85 M parameters, all in Linear layers), trained briefly on Fashion-MNIST.
Rows, every one an ONNX file run by ONNX Runtime (CPU):

=========================  ===========================================================================
``dense fp32``              the trained model
``int8``                    static int8 QDQ PTQ of every layer (``quantize_onnx``)
``int4 b32`` / ``b128``     every Linear weight-only int4 (blocks of 32 / 128 inputs, asymmetric)
``int4 b32 acc4``           ``Int4Scheme(32, accuracy_level=4)``: MatMulNBits quantises its input to int8 per
                            block on the fly and multiplies in integers (VNNI)
``pruned fp32 @B``          ``compress(strategy="global")`` at size budget B, fine-tuned, fp32
``pruned+int8 @B``          the same budget with int8 layers (prune -> quantise)
``pruned+int4 @B``          the same budget with int4 Linear layers (``quantize="int4"``): more channels kept
``pruned+int4 acc4 @B``     the same fine-tuned model quantised with accuracy_level 4
=========================  ===========================================================================

Pruned models get the same fine-tune (1 epoch, KD from the dense model) and are quantised again after it.
Accuracy: the ORT file's on a stratified test subset; ``sim acc`` the fake-quant simulation's; ``ORT vs sim``
the max |difference| of the logits relative to the largest |logit|.

Two phases, so the timing runs alone on a quiet core:

    python bench/joint_quant_int4.py build               # train, compress, quantise, accuracy (~2 min)
    /work/wt/quiet python bench/joint_quant_int4.py time # ORT latency, 1 thread, batch 1, interleaved; writes results
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import graphprune  # noqa: E402
from graphprune.data import fashion_mnist  # noqa: E402
from graphprune.files import write_text_atomic  # noqa: E402
from graphprune.quantize import QuantBudget, QuantCost, fake_quant_model, quantize_onnx  # noqa: E402
from graphprune.quantize.int4 import Int4Scheme  # noqa: E402
from graphprune.quantize.ort_ptq import interleaved_ms, ort_run  # noqa: E402
from graphprune.train import finetune, finetune_config, make_loader, train  # noqa: E402
from graphprune.train.config import TrainConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path(os.environ.get("GP_INT4_WORK", "/tmp/joint_quant_int4"))
EXAMPLE = torch.zeros(1, 1, 28, 28)


class MLP(nn.Module):
    def __init__(self, hidden: int = 1024) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))))


@dataclass
class Row:
    name: str
    onnx_path: str
    onnx_bytes: int
    size_ratio: float            # predicted (cost.py) / dense fp32
    params_ratio: float
    acc_ort: float
    acc_sim: float | None = None
    ort_vs_sim_rel: float | None = None
    ms: float | None = None


def ort_accuracy(path, test) -> tuple[float, np.ndarray]:
    images, labels = test.tensors
    logits = ort_run(path, images)
    return float((logits.argmax(1) == labels.numpy()).mean()), logits


def simulated(model, calib, bits, scheme, test, ort_logits) -> tuple[float, float]:
    images, labels = test.tensors
    with torch.no_grad():
        logits = fake_quant_model(model, calib, bits, scheme)(images).numpy()
    rel = float(np.abs(logits - ort_logits).max() / np.abs(logits).max())
    return float((logits.argmax(1) == labels.numpy()).mean()), rel


def build(args) -> None:
    torch.set_num_threads(1)
    WORK.mkdir(parents=True, exist_ok=True)
    train_set = fashion_mnist("train", subset=args.train_subset, stratified=True, seed=0)
    test = fashion_mnist("test", subset=args.test_subset, stratified=True, seed=0)
    calib = [b for _, b in zip(range(4), make_loader(train_set, 64, seed=0))]
    torch.manual_seed(0)
    dense = MLP(args.hidden)
    t = time.perf_counter()
    train(dense, make_loader(train_set, 128, seed=0), TrainConfig(epochs=args.epochs, lr=0.05, progress=False))
    dense.eval()
    print(f"trained in {time.perf_counter() - t:.0f}s", flush=True)
    graph = graphprune.inspect(dense, EXAMPLE)
    gm = graph.traced.gm
    rows: list[Row] = []

    def add(name, q_path, model, bits, scheme, size_ratio, params_ratio, simulate=True):
        acc, logits = ort_accuracy(q_path, test)
        row = Row(name, str(q_path), Path(q_path).stat().st_size, size_ratio, params_ratio, acc)
        if simulate:
            row.acc_sim, row.ort_vs_sim_rel = simulated(model, calib, bits, scheme, test, logits)
        rows.append(row)
        print(f"{name}: {row.onnx_bytes} B, acc {acc:.4f} (sim {row.acc_sim}, rel {row.ort_vs_sim_rel})", flush=True)

    cost = {s: QuantCost(graph, s) for s in (Int4Scheme(32), Int4Scheme(128))}
    full, layers = graph.full_keep(), [layer.name for layer in cost[Int4Scheme(32)].layers]
    dense_size = cost[Int4Scheme(32)].dense("size")
    int8 = quantize_onnx(gm, EXAMPLE, calib, WORK / "int8.onnx", {})
    add("dense fp32", int8.fp32_path, gm, None, None, 1.0, 1.0, simulate=False)
    add("int8", int8.int8_path, gm, {}, None, cost[Int4Scheme(32)].size_bytes(full, {}) / dense_size, 1.0)
    for scheme in (Int4Scheme(32), Int4Scheme(128)):
        bits = {name: 4 for name in layers}
        q = quantize_onnx(gm, EXAMPLE, calib, WORK / f"int4_b{scheme.block_size}.onnx", bits, int4=scheme)
        add(f"int4 b{scheme.block_size}", q.int8_path, gm, bits, scheme,
            cost[scheme].size_bytes(full, bits) / dense_size, 1.0)
    acc4, bits = Int4Scheme(32, accuracy_level=4), {name: 4 for name in layers}
    q = quantize_onnx(gm, EXAMPLE, calib, WORK / "int4_b32_acc4.onnx", bits, int4=acc4)
    add("int4 b32 acc4", q.int8_path, gm, bits, acc4, rows[-2].size_ratio, 1.0)
    ft = make_loader(train_set, 128, seed=1)
    for budget in args.budgets:
        for quantize in ("int8", "int4"):
            scheme = Int4Scheme(32)
            result = graphprune.compress(dense, QuantBudget.size(budget), EXAMPLE, quantize=quantize,
                                         calib_data=calib, strategy="global", out=WORK / "scratch.onnx", int4=scheme)
            student = copy.deepcopy(result.model)
            finetune(student, ft, finetune_config(epochs=1, lr=0.01, progress=False, seed=0), teacher=dense,
                     kd_alpha=0.5)
            student.eval()
            bits = result.bitplan.weight_bits
            q = quantize_onnx(student, EXAMPLE, calib, WORK / f"pruned_{quantize}_{budget}.onnx", bits, int4=scheme)
            r = result.report
            if quantize == "int8":
                add(f"pruned fp32 @{budget} (int8 plan)", q.fp32_path, student, None, None, r.params_ratio,
                    r.params_ratio, simulate=False)
            add(f"pruned+{quantize} @{budget}", q.int8_path, student, bits, scheme, r.size_ratio, r.params_ratio)
            if quantize == "int4":
                q = quantize_onnx(student, EXAMPLE, calib, WORK / f"pruned_int4_acc4_{budget}.onnx", bits, int4=acc4)
                add(f"pruned+int4 acc4 @{budget}", q.int8_path, student, bits, acc4, r.size_ratio, r.params_ratio)
    body = {"hidden": args.hidden, "epochs": args.epochs, "train_subset": args.train_subset,
            "test_subset": args.test_subset, "budgets": args.budgets, "rows": [asdict(r) for r in rows],
            "build_command": "python bench/joint_quant_int4.py build " + " ".join(sys.argv[2:])}
    write_text_atomic(WORK / "build.json", json.dumps(body, indent=1))


def markdown(body: dict) -> str:
    lines = ["# int4 weight-only Linear layers (ORT MatMulNBits) vs int8 / fp32 — Fashion-MNIST MLP", "",
             f"MLP 784-{body['hidden']}-{body['hidden']}-10, trained {body['epochs']} epochs on {body['train_subset']} "
             f"images; accuracy on {body['test_subset']} stratified test images (ORT file; binomial s.e. ≈ "
             f"{100 * (0.1 / body['test_subset']) ** 0.5:.1f} points). Pruned rows: `compress(strategy='global')` at "
             "the size budget, 1 epoch KD fine-tune, quantised again.", "",
             f"Build: `{body['build_command']}`; timing: `{body['time_command']}` — ORT CPU, 1 thread, batch 1, all "
             f"files interleaved ({body['rounds']} rounds × {body['runs']} runs, median), alone on a quiet core; load "
             f"average at timing: {body['load']}. CPU: {body['cpu']}.", "",
             "| model | ONNX bytes | size vs dense (pred.) | params kept | acc ORT | acc sim | ORT vs sim (rel.) | "
             "ms | vs dense fp32 | vs int8 |", "|---|---|---|---|---|---|---|---|---|---|"]
    by_name = {r["name"]: r for r in body["rows"]}
    dense, int8 = by_name["dense fp32"]["ms"], by_name["int8"]["ms"]
    for r in body["rows"]:
        sim = f"{r['acc_sim']:.4f}" if r["acc_sim"] is not None else "-"
        rel = f"{r['ort_vs_sim_rel']:.1e}" if r["ort_vs_sim_rel"] is not None else "-"
        lines.append(f"| {r['name']} | {r['onnx_bytes']} | {r['size_ratio']:.3f} | {r['params_ratio']:.3f} | "
                     f"{r['acc_ort']:.4f} | {sim} | {rel} | {r['ms']:.3f} | {r['ms'] / dense:.2f} | "
                     f"{r['ms'] / int8:.2f} |")
    int4, acc4 = by_name["int4 b32"], by_name["int4 b32 acc4"]
    lines += ["", "Reading:", "",
              f"* size: int4 (blocks of 32, asymmetric) is {int4['onnx_bytes'] / by_name['int8']['onnx_bytes']:.2f} of "
              f"the int8 file at the same accuracy ({int4['acc_ort']:.4f} vs {by_name['int8']['acc_ort']:.4f}); at "
              "equal size, int4 keeps more channels than int8 (the `params kept` column) and pruned+int4 minus "
              "pruned+int8 accuracy is " + ", ".join(
                  f"{by_name[f'pruned+int4 @{b}']['acc_ort'] - by_name[f'pruned+int8 @{b}']['acc_ort']:+.4f} at {b}"
                  for b in body["budgets"]) + " (1 seed, one training run);",
              f"* ORT int4 == simulation: the fake-quant weights equal ORT's bit for bit, max |logit diff| / max |logit| "
              f"<= {max(r['ort_vs_sim_rel'] for r in body['rows'] if 'int4' in r['name'] and 'acc4' not in r['name']):.1e} "
              "(accuracy_level 0 rows);",
              f"* latency: `MatMulNBits` as written by ORT's quantiser (accuracy_level unset = fp32 compute on "
              f"dequantised blocks) runs at {int4['ms'] / int8:.2f}x the int8 QDQ model's time at batch 1 on this CPU "
              f"(faster than fp32, {int4['ms'] / dense:.2f}x, but slower than int8). With accuracy_level=4 (int8 "
              f"activations inside the kernel, VNNI; `Int4Scheme(accuracy_level=4)`) it runs at {acc4['ms'] / int8:.2f}x "
              f"int8, accuracy {acc4['acc_ort']:.4f} (its simulation: rel. diff {acc4['ort_vs_sim_rel']:.1e}: a rounding "
              "tie of the on-the-fly int8 input may fall differently)."]
    return "\n".join(lines) + "\n"


def time_files(args) -> None:
    body = json.loads((WORK / "build.json").read_text())
    paths = [Path(r["onnx_path"]) for r in body["rows"]]
    ms = interleaved_ms(paths, EXAMPLE, rounds=args.rounds, runs=args.runs)
    for r, m in zip(body["rows"], ms):
        r["ms"] = m
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    flags = next((line for line in open("/proc/cpuinfo") if line.startswith("flags")), "")
    body.update(rounds=args.rounds, runs=args.runs, load=" ".join(open("/proc/loadavg").read().split()[:3]),
                cpu=cpu + (" (AVX512-VNNI)" if "avx512_vnni" in flags else " (no AVX512-VNNI)"),
                time_command="/work/wt/quiet python bench/joint_quant_int4.py time " + " ".join(sys.argv[2:]))
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / "joint_quant_int4.json", json.dumps(body, indent=1))
    write_text_atomic(RESULTS / "joint_quant_int4.md", markdown(body))
    print(markdown(body))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("phase", choices=["build", "time", "render"], help="render: rewrite the .md from the .json")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-subset", type=int, default=20000)
    p.add_argument("--test-subset", type=int, default=5000)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.1, 0.05])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--runs", type=int, default=30)
    args = p.parse_args()
    if args.phase == "render":
        write_text_atomic(RESULTS / "joint_quant_int4.md",
                          markdown(json.loads((RESULTS / "joint_quant_int4.json").read_text())))
        return
    build(args) if args.phase == "build" else time_files(args)


if __name__ == "__main__":
    main()

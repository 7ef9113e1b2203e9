"""Does BatchNorm recalibration after pruning help prune→int8?  ``compress(recalibrate_bn=True)`` vs without.

For each model and size budget: uniform→int8 (``compress(strategy="uniform", quantize="int8")``) with and
without re-estimating BatchNorm statistics on the calibration images (``graphprune.quantize.bn_recal``); accuracy
of the ORT int8 model before fine-tuning, and after the same short fine-tune as ``joint_quant_models.py``
(KD from the dense model).  Writes ``bench/results/joint_quant_bnrecal.{json,md}``.

    python bench/joint_quant_bnrecal.py --models resnet56 mobilenetv2 --budgets 0.15
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from joint_quant import EXAMPLE, RESULTS, ort_accuracy  # noqa: E402
from joint_quant_models import EXPORTER, REPO  # noqa: E402

import graphprune  # noqa: E402
from graphprune.data import fashion_mnist  # noqa: E402
from graphprune.files import write_text_atomic  # noqa: E402
from graphprune.quantize import QuantBudget, quantize_onnx  # noqa: E402
from graphprune.train import finetune, finetune_config, load_checkpoint, make_loader  # noqa: E402


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet56", "mobilenetv2"])
    p.add_argument("--budgets", type=float, nargs="+", default=[0.15])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ft-subset", type=int, nargs="+", default=[1000, 384], help="per model")
    p.add_argument("--ft-batch", type=int, default=64)
    p.add_argument("--ft-lr", type=float, default=0.02)
    p.add_argument("--test-subset", type=int, default=500)
    p.add_argument("--calib-batches", type=int, default=2)
    p.add_argument("--work", default="/tmp/joint_quant_bnrecal")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    test = fashion_mnist("test", subset=args.test_subset, stratified=True, seed=0)
    rows = []
    for model_name, ft_subset in zip(args.models, args.ft_subset):
        teacher = load_checkpoint(REPO / "checkpoints" / f"{model_name}.pt").build().eval()
        train = fashion_mnist("train", subset=ft_subset, stratified=True, seed=0)
        calib = [b for _, b in zip(range(args.calib_batches), make_loader(train, 64, seed=0))]
        work = Path(args.work) / model_name
        work.mkdir(parents=True, exist_ok=True)
        for budget in args.budgets:
            for recal in (False, True):
                t = time.perf_counter()
                r = graphprune.compress(teacher, QuantBudget.size(budget), EXAMPLE, calib_data=calib,
                                        strategy="uniform", recalibrate_bn=recal, exporter=EXPORTER,
                                        out=work / f"{budget}-{recal}.int8.onnx")
                before = ort_accuracy(r.onnx.int8_path, test)
                student = copy.deepcopy(r.model)
                config = finetune_config(epochs=1, lr=args.ft_lr, progress=False, seed=args.seed)
                finetune(student, make_loader(train, args.ft_batch, seed=args.seed), config, teacher=teacher,
                         kd_alpha=0.5)
                q = quantize_onnx(student.eval(), EXAMPLE, calib, work / f"{budget}-{recal}-ft.int8.onnx",
                                  exporter=EXPORTER)
                rows.append({"model": model_name, "budget": budget, "recalibrate_bn": recal,
                             "size_ratio": r.report.size_ratio, "acc_int8_before_ft": before,
                             "acc_int8_after_ft": ort_accuracy(q.int8_path, test), "ft_subset": ft_subset,
                             "seconds": time.perf_counter() - t})
                print(rows[-1], flush=True)
    lines = ["# BatchNorm recalibration after pruning (uniform→int8, Fashion-MNIST)", "",
             f"Command: `python bench/joint_quant_bnrecal.py {' '.join(argv or sys.argv[1:])}`", "",
             f"Calibration / BN recalibration: {args.calib_batches}×64 train images; fine-tune: KD α=0.5, 1 epoch, "
             f"batch {args.ft_batch}, lr {args.ft_lr}, seed {args.seed}; ORT int8 accuracy on {args.test_subset} "
             "stratified test images (one seed: s.e. ≈ 2 points).", "",
             "| model | size budget | BN recalibrated | size ratio | acc int8 before FT | acc int8 after FT | FT images |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['budget']} | {r['recalibrate_bn']} | {r['size_ratio']:.3f} | "
                     f"{r['acc_int8_before_ft']:.4f} | {r['acc_int8_after_ft']:.4f} | {r['ft_subset']} |")
    write_text_atomic(RESULTS / "joint_quant_bnrecal.json", json.dumps(rows, indent=1))
    write_text_atomic(RESULTS / "joint_quant_bnrecal.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# The main job: prune the bundled CIFAR-style ResNet-56 — the Fashion-MNIST-trained baseline when its
# checkpoint is here, else ResNet-20's, else untrained weights — to half its MACs, export ONNX, check it
# with ONNX Runtime, time dense vs pruned, and print the report.  BUDGET=0.3 bash scripts/quickstart.sh
# Widths come from graphprune's default menus (round_to="auto": multiples of 16, finer only where the budget
# needs them; ROUND_TO=1 for the exact budget, ROUND_TO=N for multiples of N): odd widths can make a smaller
# network slower on ONNX Runtime's CPU kernels (bench/results/latency_rounding.md).  LATENCY=0.5 prunes to half the measured ORT time instead.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
model="models:resnet56"
eval_args=()
for ckpt in checkpoints/resnet56.pt checkpoints/resnet20.pt; do
  if [ -f "$ckpt" ]; then
    model="checkpoint:$ckpt"
    [ -d /usr/share/datasets/fashion-mnist ] && eval_args=(--eval fashion_mnist --finetune-epochs 1)
    break
  fi
done
budget_args=(--budget "${BUDGET:-0.5}")
[ -n "${LATENCY:-}" ] && budget_args=(--latency "$LATENCY")
graphprune prune "$model" "${budget_args[@]}" --round-to "${ROUND_TO:-auto}" --onnx out/pruned.onnx \
  --save out/pruned.pt --report out/report.json \
  ${eval_args[@]+"${eval_args[@]}"}

"""Fine-tuning after pruning, on real offline tasks: a small ViT and a small Llama-style language model.

Protocol, per model (CPU, one torch thread):

1. train the dense model for ``steps`` steps (AdamW, linear warm-up then cosine decay);
2. prune it to 0.5 of its MACs with ``graphprune.prune(..., front_end="export")`` (Hugging Face transformers 5.x
   are captured by torch.export; importance L2, strategy global);
3. evaluate the pruned model as it comes out (before fine-tuning), fine-tune it for the same ``steps`` with the same
   schedule, evaluate again;
4. controls: (a) the dense model trained ``steps`` more with the same fresh schedule ("dense 2N": the same total
   training as the fine-tuned pruned model, which has seen 2N steps); (b) the pruned architecture with its weights
   re-initialised (HF-style: normal(0, 0.02) matrices, zero biases, unit norm scales) trained for ``steps`` — what
   the pruned weights are worth over the shape alone.

*Recovered* = (pruned after − pruned before) / (dense − pruned before): the share of the quality lost by pruning
that fine-tuning brought back (for the LM on validation loss, where lower is better, both differences flip sign);
*recovered at equal training* uses dense 2N in place of dense.

Tasks (no downloads):

* **ViT on Fashion-MNIST** (Debian ``dataset-fashion-mnist``): ``transformers.ViTForImageClassification``, 28×28
  grey images in 4×4 patches (49 tokens), random init; accuracy on the 10 000 test images.
* **Llama byte-level LM**: ``transformers.LlamaForCausalLM`` (GQA, RoPE, SwiGLU, RMSNorm), 256-symbol vocabulary
  (bytes), random init, trained on the text of CPython's ``pydoc_data/topics.py`` (the stdlib's ``help()`` topic
  pages, ~465 KB of English prose and code, in every Python install); the last 10 % of the text is held out;
  validation loss in nats per byte (and perplexity, bits per byte).

The torch.export front end fixes every shape to the example inputs and runs dropout / BatchNorm in inference mode.
So both models train and evaluate at one fixed batch size and sequence length (the last evaluation batch is padded
with repeats, which are not counted), and the configs have no dropout (ViT and Llama defaults are 0), and neither
model has BatchNorm: dense and pruned models train the same kind of function.

Writes ``bench/results/finetune_transformers.json`` and ``.md``.

    python bench/finetune_transformers.py                          # ~15-25 min on 1 thread
    python bench/finetune_transformers.py --tasks vit --vit-steps 50
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment, fmt, markdown_table, write_json  # noqa: E402
from finetune_tasks import Sizing, Task, llama_task, logits_of, stdlib_help_text, vit_task  # noqa: E402,F401

import graphprune  # noqa: E402

BUDGET = 0.5
TASKS = ("vit", "llama")


@dataclass
class FinetuneRow:
    """Dense vs pruned (before / after fine-tuning) vs the pruned shape trained from scratch, for one task."""

    task: str
    data: str
    metric: str
    steps: int
    batch: int
    dense: dict[str, float] = field(default_factory=dict)
    dense_2n: dict[str, float] = field(default_factory=dict)
    pruned_before: dict[str, float] = field(default_factory=dict)
    pruned_after: dict[str, float] = field(default_factory=dict)
    scratch: dict[str, float] = field(default_factory=dict)
    recovered: float | None = None
    recovered_equal_training: float | None = None
    macs_ratio: float | None = None
    params_dense: int = 0
    params_pruned: int = 0
    front_end: str = ""
    prune_seconds: float = 0.0
    train_seconds: dict[str, float] = field(default_factory=dict)
    onnx: str = ""


# ---- training -------------------------------------------------------------------------------------------------
def _lr_at(step: int, sizing: Sizing) -> float:
    if step < sizing.warmup:
        return sizing.lr * (step + 1) / sizing.warmup
    progress = (step - sizing.warmup) / max(1, sizing.steps - sizing.warmup)
    return sizing.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def train(model: torch.nn.Module, task: Task, sizing: Sizing) -> float:
    """``sizing.steps`` AdamW steps on ``task``'s batches (seeded, the same batches for every model); seconds."""
    rng = np.random.default_rng(sizing.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": sizing.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=sizing.lr)
    model.train()
    start = time.perf_counter()
    for step in range(sizing.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, sizing)
        inputs, targets = task.sample(rng)
        loss = task.loss(logits_of(model(inputs)), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    model.eval()
    return time.perf_counter() - start


def reinitialise_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """HF-style fresh weights, by parameter shape: matrices normal(0, 0.02), biases 0, other vectors 1 (norms)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            else:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
    return model


# ---- the protocol ---------------------------------------------------------------------------------------------
def recovered_share(dense: float, before: float, after: float) -> float | None:
    """(after − before) / (dense − before): the same formula for accuracy and loss (both differences flip)."""
    return (after - before) / (dense - before) if dense != before else None


def run_task(task: Task, sizing: Sizing, control: bool = True, onnx: bool = True, log=print) -> FinetuneRow:
    row = FinetuneRow(task.name, task.data, task.metric, sizing.steps, sizing.batch)
    dense = task.build()
    row.params_dense = sum(p.numel() for p in dense.parameters())
    row.train_seconds["dense"] = train(dense, task, sizing)
    row.dense = task.evaluate(dense)
    log(f"{task.name}: dense {row.dense} ({row.train_seconds['dense']:.0f}s)")

    start = time.perf_counter()
    result = graphprune.prune(dense.eval(), BUDGET, task.example, front_end="export", return_result=True)
    row.prune_seconds = time.perf_counter() - start
    pruned = result.model
    row.macs_ratio, row.front_end = result.report.macs_ratio, result.report.front_end
    row.params_pruned = sum(p.numel() for p in pruned.parameters())
    scratch = reinitialise_(copy.deepcopy(pruned), sizing.seed) if control else None
    row.pruned_before = task.evaluate(pruned)
    row.train_seconds["finetune"] = train(pruned, task, sizing)
    row.pruned_after = task.evaluate(pruned)
    log(f"{task.name}: pruned {row.pruned_before} -> {row.pruned_after} ({row.train_seconds['finetune']:.0f}s)")
    m = task.metric
    row.recovered = recovered_share(row.dense[m], row.pruned_before[m], row.pruned_after[m])
    if control:
        continued = copy.deepcopy(dense)
        row.train_seconds["dense_2n"] = train(continued, task, sizing)
        row.dense_2n = task.evaluate(continued)
        row.recovered_equal_training = recovered_share(row.dense_2n[m], row.pruned_before[m], row.pruned_after[m])
        log(f"{task.name}: dense trained 2N steps {row.dense_2n}")
    if scratch is not None:
        row.train_seconds["scratch"] = train(scratch, task, sizing)
        row.scratch = task.evaluate(scratch)
        log(f"{task.name}: pruned shape from scratch {row.scratch}")
    if onnx:
        row.onnx = _onnx_check(pruned, task.example)
    return row


def _onnx_check(model: torch.nn.Module, example: torch.Tensor) -> str:
    from graphprune.export import check_onnx, export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, example, Path(tmp) / "finetuned.onnx")
        check = check_onnx(model, example, path)
    return f"{path.exporter} exporter, ORT max |diff| {check.max_abs_diff:.1e} (rel {check.max_rel_diff:.1e})"


# ---- output ----------------------------------------------------------------------------------------------------
def render(rows: list[FinetuneRow], meta: dict) -> str:
    head = ["model", "metric", "dense (N steps)", "pruned, before FT", "pruned, after FT (N more)", "recovered",
            "dense 2N steps", "recovered at equal training", "pruned shape from scratch (N)", "MACs kept",
            "params dense → pruned", "train s (dense / FT / dense 2N / scratch)"]
    body = []
    for r in rows:
        m = r.metric
        cell = lambda d: fmt(d.get(m), ".4f") + (f" (ppl {d['perplexity']:.2f})" if "perplexity" in d else "")
        body.append([r.task, m + (" ↓" if m == "val_loss" else " ↑"), cell(r.dense), cell(r.pruned_before),
                     cell(r.pruned_after), fmt(r.recovered, ".0%") if r.recovered is not None else "—",
                     cell(r.dense_2n) if r.dense_2n else "—",
                     fmt(r.recovered_equal_training, ".0%") if r.recovered_equal_training is not None else "—",
                     cell(r.scratch) if r.scratch else "—", fmt(r.macs_ratio),
                     f"{r.params_dense / 1e3:.0f}k → {r.params_pruned / 1e3:.0f}k",
                     " / ".join(f"{r.train_seconds.get(k, 0):.0f}" for k in ("dense", "finetune", "dense_2n",
                                                                                 "scratch"))])
    details = [f"- **{r.task}** — data: {r.data}; {r.steps} steps of batch {r.batch}; captured by "
               f"{r.front_end}, prune {r.prune_seconds:.1f} s; fine-tuned model to ONNX: {r.onnx or 'not checked'}"
               for r in rows]
    return "\n".join([
        "# Fine-tuning after pruning: ViT on Fashion-MNIST, byte-level Llama on the stdlib's help text", "",
        f"Command: `{meta['command']}` ({meta['environment']['date']}, torch {meta['environment']['torch']}, "
        f"1 torch thread on 2 shared CPU cores; total {meta['total_seconds'] / 60:.1f} min).", "",
        "Dense trained N steps → pruned to 0.5 MACs (torch.export front end) → fine-tuned the same N steps with "
        "the same schedule. *recovered* = (after − before) / (dense − before); *dense 2N* = the dense model "
        "trained N more steps with the same fresh schedule, the same total training as the fine-tuned pruned model, "
        "and *recovered at equal training* uses it in place of dense. *pruned shape from scratch* = the pruned "
        "architecture re-initialised and trained N steps (control). Fixed batch size and sequence length "
        "throughout: the export front end fixes shapes (see the script's docstring).", "",
        markdown_table(head, body), "", *details, "", *_reading(rows)])


def _reading(rows: list[FinetuneRow]) -> list[str]:
    """One sentence per task, in numbers taken from the row."""
    lines = []
    for r in rows:
        m = r.metric
        if not (r.dense and r.pruned_before and r.pruned_after):
            continue
        text = (f"- {r.task.split(' (')[0]}: pruning to {r.macs_ratio:.2f} of the MACs moved {m} "
                f"{r.dense[m]:.4f} → {r.pruned_before[m]:.4f}; {r.steps} fine-tuning steps gave "
                f"{r.pruned_after[m]:.4f}")
        if r.dense_2n and r.recovered_equal_training is not None:
            text += (f", {r.recovered_equal_training:.0%} of the way back to the dense model given the same total "
                     f"training ({r.dense_2n[m]:.4f})")
        if r.scratch:
            better = (r.pruned_after[m] > r.scratch[m]) == (m != "val_loss")
            text += (f"; the pruned shape trained from scratch for those {r.steps} steps reached {r.scratch[m]:.4f} "
                     f"({'worse' if better else 'better'} than the pruned weights fine-tuned, which also carry the "
                     "dense model's first N steps)")
        lines.append(text + ".")
    return ["Reading:", "", *lines, ""] if lines else []


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--vit-steps", type=int, default=400)
    parser.add_argument("--vit-batch", type=int, default=64)
    parser.add_argument("--lm-steps", type=int, default=300)
    parser.add_argument("--lm-batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--no-control", action="store_true", help="skip the from-scratch control runs")
    parser.add_argument("--out-name", default="finetune_transformers")
    parser.add_argument("--render", action="store_true", help="re-render the .md from the .json only")
    args = parser.parse_args(argv)
    if args.render:
        payload = json.loads((RESULTS / f"{args.out_name}.json").read_text())
        rows = [FinetuneRow(**{k: v for k, v in r.items() if k in FinetuneRow.__dataclass_fields__})
                for r in payload["rows"]]
        (RESULTS / f"{args.out_name}.md").write_text(render(rows, payload["meta"]))
        return
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = []
    if "vit" in args.tasks:
        from graphprune.data import fashion_mnist

        sizing = Sizing(args.vit_steps, args.vit_batch, lr=1e-3)
        task = vit_task(fashion_mnist("train"), fashion_mnist("test"), sizing)
        rows.append(run_task(task, sizing, control=not args.no_control))
    if "llama" in args.tasks:
        text, source = stdlib_help_text()
        sizing = Sizing(args.lm_steps, args.lm_batch, lr=2e-3)
        task = llama_task(text, sizing, args.seq_len, source="CPython " + "/".join(Path(source).parts[-3:]))
        rows.append(run_task(task, sizing, control=not args.no_control))
    meta = {"command": "python bench/finetune_transformers.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "environment": environment(), "total_seconds": time.perf_counter() - start}
    write_json(RESULTS / f"{args.out_name}.json", {"meta": meta, "rows": [asdict(r) for r in rows]})
    text = render(rows, meta)
    (RESULTS / f"{args.out_name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Which models come back as their own class: ``prune(..., output="auto")`` over torchvision, timm and Hugging Face.

For each model (random weights, ``randomize_``; budget 0.5 of MACs, default settings) this records what ``prune``
returned (``module``: the user's class rewritten in place; ``graph``: the fx GraphModule) and, for ``graph``, the
reason; then checks the in-place result like the graph: mask equivalence against ``passes.masked_model``
(``max|out - masked| / max|masked|``), ``state_dict()`` keys equal to the original's, and a fresh instance rebuilt
with ``rebuild_like`` giving the same output.  Times: the whole prune and its ``output`` stage (the recapture that
proves the copy equal to the pruned graph).

    python bench/in_place.py                       # the default list (torchvision 64x64 where they allow it)
    python bench/in_place.py --models resnet18 hf:bert
    python bench/in_place.py --report              # re-render the .md from the .json

Writes ``bench/results/in_place.json`` and ``in_place.md`` after every model.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, Timer, environment, fmt, markdown_table, time_limit, write_json  # noqa: E402

JSON_PATH, MD_PATH = RESULTS / "in_place.json", RESULTS / "in_place.md"
TORCHVISION = ["resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2", "mobilenet_v3_small",
               "mobilenet_v3_large", "mnasnet0_5", "efficientnet_b0", "efficientnet_v2_s", "regnet_y_400mf",
               "regnet_x_400mf", "densenet121", "shufflenet_v2_x0_5", "squeezenet1_1", "googlenet", "vgg11_bn",
               "alexnet", "convnext_tiny", "swin_t", "vit_b_16", "maxvit_t"]
TIMM = ["timm:convnext_atto", "timm:resnet18d", "timm:efficientnet_b0", "timm:mobilenetv3_small_100",
        "timm:deit_tiny_patch16_224", "timm:regnety_002", "timm:ghostnet_100", "timm:poolformer_s12"]
HF = ["hf:bert", "hf:vit", "hf:gpt2", "hf:llama"]
FIXED_224 = {"vit_b_16", "swin_t", "maxvit_t", "timm:deit_tiny_patch16_224"}
ALEX_SIZE = {"alexnet": 96, "googlenet": 96}


@dataclass
class Row:
    model: str
    input: str
    front_end: str = ""
    output_kind: str = ""
    reason: str = ""
    mask_rel_diff: float | None = None
    keys_same: bool | None = None
    rebuilt_same: bool | None = None
    prune_s: float | None = None
    output_s: float | None = None
    notes: str = ""
    error: str = ""


def _hf(name: str):
    import transformers

    ids = torch.randint(0, 100, (1, 16), generator=torch.Generator().manual_seed(0))
    if name == "bert":
        cfg = transformers.BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=128, max_position_embeddings=32, num_labels=3)
        return lambda: transformers.BertForSequenceClassification(cfg), ids
    if name == "vit":
        cfg = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                     image_size=32, patch_size=8, num_labels=3)
        return lambda: transformers.ViTForImageClassification(cfg), torch.randn(1, 3, 32, 32)
    if name == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=32, use_cache=False)
        return lambda: transformers.GPT2LMHeadModel(cfg), ids
    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=128, max_position_embeddings=32,
                                   use_cache=False)
    return lambda: transformers.LlamaForCausalLM(cfg), ids


def _builder(name: str):
    """(build() -> fresh model, example input) for a torchvision name, ``timm:NAME`` or ``hf:NAME``."""
    if name.startswith("hf:"):
        return _hf(name[3:])
    size = 224 if name in FIXED_224 else ALEX_SIZE.get(name, 64)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    if name.startswith("timm:"):
        import timm

        return lambda: timm.create_model(name[5:], pretrained=False), x
    from torchvision.models import get_model

    kw = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    return lambda: get_model(name, weights=None, **kw), x


def _first(y):
    if isinstance(y, dict):
        y = list(y.values())
    return y[0] if isinstance(y, (tuple, list)) else y


def run_one(name: str, limit_s: float) -> Row:
    import graphprune
    from graphprune.testing import randomize_

    build, x = _builder(name)
    row = Row(name, "x".join(map(str, x.shape)))
    torch.manual_seed(0)
    model = randomize_(build()).eval()
    try:
        with time_limit(limit_s, "prune"), Timer() as t, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = graphprune.prune(model, 0.5, x, return_result=True)
    except Exception as exc:  # recorded, the run goes on
        row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        return row
    r = result.report
    row.front_end, row.output_kind, row.reason = r.front_end, r.output_kind, r.output_reason[:300]
    row.prune_s, row.output_s = t.seconds, r.seconds.get("output")
    row.notes = "; ".join(r.output_notes)
    masked = graphprune.masked_model(result.graph, result.plan.keep_mask(result.graph)).eval()
    with torch.no_grad():
        got, want = _first(result.model(x)), _first(masked(x))
    row.mask_rel_diff = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
    if r.output_kind == "module":
        row.keys_same = list(result.model.state_dict()) == list(model.state_dict())
        torch.manual_seed(1)
        fresh = graphprune.rebuild_like(build().eval(), result.model.state_dict(), attributes=r.size_attributes)
        with torch.no_grad():
            row.rebuilt_same = bool(torch.equal(_first(fresh(x)), got))
    return row


def render(rows: list[dict], env: dict) -> str:
    n_module = sum(r["output_kind"] == "module" for r in rows)
    ok = [r for r in rows if r["output_kind"] == "module" and r["keys_same"] and r["rebuilt_same"]
          and (r["mask_rel_diff"] or 0) <= 1e-4]
    head = ["model", "input", "front end", "output", "mask rel diff", "keys", "rebuilt", "prune s", "output s",
            "reason (graph) / notes (config, size attributes set)"]
    body = [[r["model"], r["input"], r["front_end"], r["output_kind"] or "error", fmt(r["mask_rel_diff"], ".1e"),
             fmt(r["keys_same"]), fmt(r["rebuilt_same"]), fmt(r["prune_s"], ".2f"), fmt(r["output_s"], ".2f"),
             r["error"] or r["reason"] or r["notes"]] for r in rows]
    return (f"# prune(output='auto'): the user's own class or the GraphModule\n\n"
            f"{n_module}/{len(rows)} models came back as their own class; {len(ok)} of them mask-equivalent "
            f"(≤ 1e-4), with the original's state_dict keys, and rebuilt exactly by rebuild_like. "
            f"Budget 0.5 of MACs, random weights. `output s`: the recapture proving the copy equal to the pruned "
            f"graph. torch {env.get('torch')}, {env.get('date')}, shared 2-core CPU (times noisy).\n\n"
            + markdown_table(head, body) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=TORCHVISION + TIMM + HF)
    p.add_argument("--limit-s", type=float, default=300.0, help="time limit per model")
    p.add_argument("--report", action="store_true", help="re-render the markdown from the JSON")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.report:
        payload = json.loads(JSON_PATH.read_text())
        MD_PATH.write_text(render(payload["rows"], payload["environment"]))
        return
    env, rows = environment(), []
    for name in args.models:
        row = run_one(name, args.limit_s)
        rows.append(asdict(row))
        print(f"{name:32s} {row.output_kind or 'error':7s} mask {fmt(row.mask_rel_diff, '.1e')} "
              f"keys {fmt(row.keys_same)} rebuilt {fmt(row.rebuilt_same)} {row.error or row.reason[:120]}", flush=True)
        write_json(JSON_PATH, {"environment": env, "rows": rows})
        MD_PATH.write_text(render(rows, env))
    print(render(rows, env))


if __name__ == "__main__":
    main()

"""Attention units: is an attention layer faster with whole heads removed, or with the head dim shrunk?

At equal MACs, an attention layer of ``H`` heads of ``d`` channels pruned to ``H' x d`` (whole heads, the
``attention="heads"`` units) or to ``H x d'`` with ``H' d = H d'`` (head-dim offsets, ``"head_dim"``) has
the same projection GEMMs (``C -> H' d`` = ``C -> H d'``) and the same number of attention multiply-adds, but
the per-head products differ: ``H'`` products of ``(N, d) x (d, N)`` versus ``H`` products of ``(N, d') x (d', N)``.
This bench times both shapes (ViT-B/16-like: ``C = 768``, ``N = 197``, ``H = 12``, ``d = 64``, and a ViT-S/16-like
one: ``C = 384``, ``H = 6``) in ONNX Runtime (CPU, 1 thread) and PyTorch eager, in alternating rounds (median of
round medians), and reports ``heads / head_dim`` latency ratios (< 1: whole heads are faster).

Writes ``bench/results/attention_units.json`` and ``.md``; this is the evidence behind ``"auto"``'s rule in
``graphprune/depgraph/heads.py``.

    python bench/attention_units.py
    python bench/attention_units.py --rounds 2 --runs 5 --configs small
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment, markdown_table, write_json  # noqa: E402

from graphprune.export import export_onnx  # noqa: E402
from graphprune.export.onnx import ort_latency  # noqa: E402
from graphprune.flops import counted_macs  # noqa: E402

# (name, embed width C, tokens N, heads H, head dim d, fractions of the attention kept)
CONFIGS = {"vit_b": (768, 197, 12, 64, (0.75, 0.5, 0.25)), "vit_s": (384, 197, 6, 64, (0.5,)),
           "small": (64, 17, 4, 16, (0.5,))}


class AttentionBlock(nn.Module):
    """timm-style attention with ``heads`` heads of ``head_dim`` channels and the dense model's softmax scale."""

    def __init__(self, dim: int, heads: int, head_dim: int, scale: float):
        super().__init__()
        self.heads, self.head_dim, self.scale = heads, head_dim, scale
        self.qkv = nn.Linear(dim, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, dim)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(y.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


@dataclass
class Row:
    config: str
    kept: float
    heads_shape: str
    head_dim_shape: str
    macs_ratio: float  # pruned / dense, equal for both shapes
    ort_heads_ms: float
    ort_head_dim_ms: float
    torch_heads_ms: float
    torch_head_dim_ms: float

    @property
    def ort_ratio(self) -> float:
        return self.ort_heads_ms / self.ort_head_dim_ms

    @property
    def torch_ratio(self) -> float:
        return self.torch_heads_ms / self.torch_head_dim_ms


def _torch_ms(model: nn.Module, x: torch.Tensor, runs: int) -> float:
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(runs):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def measure(name: str, kept: float, rounds: int, runs: int, tmp: Path) -> Row:
    dim, n, heads, d, _ = CONFIGS[name]
    h_kept, d_kept = round(heads * kept), round(d * kept)
    torch.manual_seed(0)
    models = {"heads": AttentionBlock(dim, h_kept, d, d ** -0.5).eval(),
              "head_dim": AttentionBlock(dim, heads, d_kept, d ** -0.5).eval()}
    x = torch.randn(1, n, dim)
    macs = {k: counted_macs(m, (x,)) for k, m in models.items()}
    dense = counted_macs(AttentionBlock(dim, heads, d, d ** -0.5).eval(), (x,))
    assert abs(macs["heads"] - macs["head_dim"]) <= 1e-6 * dense, macs
    paths = {k: export_onnx(m, (x,), tmp / f"{name}_{kept}_{k}.onnx") for k, m in models.items()}
    ort = {k: [] for k in models}
    eager = {k: [] for k in models}
    for _ in range(rounds):  # alternate, so that a noisy neighbour hits both shapes alike
        for k in models:
            ort[k].append(ort_latency(paths[k], (x,), runs=runs, warmup=2, threads=1) * 1e3)
            eager[k].append(_torch_ms(models[k], x, runs))
    med = {k: statistics.median(v) for k, v in ort.items()}
    tmed = {k: statistics.median(v) for k, v in eager.items()}
    return Row(name, kept, f"{h_kept}x{d}", f"{heads}x{d_kept}", macs["heads"] / dense, med["heads"], med["head_dim"],
               tmed["heads"], tmed["head_dim"])


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["vit_b", "vit_s"], choices=list(CONFIGS))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--out", default=str(RESULTS / "attention_units"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            for kept in CONFIGS[name][4]:
                rows.append(measure(name, kept, args.rounds, args.runs, Path(tmp)))
    headers = ["config", "kept", "heads HxD", "head_dim HxD", "MACs ratio", "ORT heads ms", "ORT head_dim ms",
               "ORT heads/head_dim", "torch heads ms", "torch head_dim ms", "torch heads/head_dim"]
    table = markdown_table(headers, [[r.config, f"{r.kept:.2f}", r.heads_shape, r.head_dim_shape, f"{r.macs_ratio:.3f}",
                                      f"{r.ort_heads_ms:.3f}", f"{r.ort_head_dim_ms:.3f}", f"{r.ort_ratio:.3f}",
                                      f"{r.torch_heads_ms:.3f}", f"{r.torch_head_dim_ms:.3f}", f"{r.torch_ratio:.3f}"]
                                     for r in rows])
    print(table)
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {"environment": environment(), "rounds": args.rounds, "runs": args.runs,
                                          "rows": [dict(asdict(r), ort_ratio=r.ort_ratio, torch_ratio=r.torch_ratio)
                                                   for r in rows]})
    out.with_suffix(".md").write_text("# Attention units: whole heads vs head dim at equal MACs\n\n"
                                      f"`python bench/attention_units.py` (1 thread, {args.rounds} alternating rounds "
                                      f"x {args.runs} runs; ratio < 1: whole heads faster)\n\n{table}\n")
    return rows


if __name__ == "__main__":
    main()

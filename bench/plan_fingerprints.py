"""Plan fingerprints: the plans and pruned outputs graphprune produces on fixed cases, to compare two versions.

For every coupling pattern of ``graphprune.testing.PATTERNS`` and a list of torchvision models (``weights=None``,
seeded, 1x3x224x224 unless ``--size``), at budget 0.5 of MACs with ``round_to=1`` (exact widths: the default
``"auto"`` menus are a separate, newer choice) and the ``global``/``l2`` strategy:

* the plan (kept unit ids per group) and its SHA-1,
* the pruned model's output on a fixed input (its SHA-1 over float32 bytes rounded to 1e-5 of the output scale,
  and the max |diff| against the masked reference).

A refactor that claims "same plans, same outputs" runs this before and after and compares the JSON files:

    python bench/plan_fingerprints.py --out /tmp/before.json
    ... change ...
    python bench/plan_fingerprints.py --out /tmp/after.json --compare /tmp/before.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import graphprune
from graphprune.passes import masked_model
from graphprune.testing import PATTERNS, randomize_

TORCHVISION = ["resnet18", "mobilenet_v2", "densenet121", "efficientnet_b0", "regnet_y_400mf", "shufflenet_v2_x0_5",
               "vit_b_16", "convnext_tiny"]


def _digest(array: np.ndarray) -> str:
    scale = float(np.abs(array).max()) or 1.0
    return hashlib.sha1(np.round(array / scale, 5).astype(np.float32).tobytes()).hexdigest()[:16]


def fingerprint(model: torch.nn.Module, x: torch.Tensor) -> dict:
    """Plan, plan digest, output digest and mask-equivalence diff of ``prune(model, 0.5, x, round_to=1)``."""
    result = graphprune.prune(model, 0.5, x, round_to=1, return_result=True)
    kept = {k: list(v) for k, v in sorted(result.plan.kept.items())}
    with torch.no_grad():
        out = result.model(x)
        ref = masked_model(result.graph, result.plan.keep_mask(result.graph))(x)
    out, ref = (o[0] if isinstance(o, (tuple, list)) else o for o in (out, ref))
    return {"plan_sha1": hashlib.sha1(json.dumps(kept).encode()).hexdigest()[:16], "groups": len(kept),
            "macs_ratio": round(result.report.macs_ratio, 6), "output_sha1": _digest(out.numpy()),
            "mask_diff": float((out - ref).abs().max())}


def cases(models: list[str], size: int):
    for p in PATTERNS:
        torch.manual_seed(0)
        def example(p=p):
            torch.manual_seed(0)
            return p.make_input()
        yield f"pattern:{p.name}", (lambda p=p: randomize_(p.build().eval())), example
    for name in models:
        import torchvision

        def build(name=name):
            torch.manual_seed(0)
            return randomize_(torchvision.models.get_model(name, weights=None).eval())
        yield f"torchvision:{name}", build, (lambda: torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--models", nargs="*", default=TORCHVISION)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--compare", help="an earlier output: print every case whose plan or output differs")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = {}
    for name, build, example in tqdm(list(cases(args.models, args.size)), desc="fingerprints"):
        try:
            rows[name] = fingerprint(build(), example())
        except Exception as exc:  # NOTE: a failure is a fingerprint too
            rows[name] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    Path(args.out).write_text(json.dumps(rows, indent=1))
    if not args.compare:
        return 0
    before = json.loads(Path(args.compare).read_text())
    keys = ("plan_sha1", "output_sha1", "macs_ratio", "error")
    differ = [k for k in sorted(set(before) | set(rows))
              if any(before.get(k, {}).get(f) != rows.get(k, {}).get(f) for f in keys)]
    for k in differ:
        print(f"DIFFERS {k}: before {before.get(k)} after {rows.get(k)}")
    print(f"{len(rows) - len(differ)}/{len(rows)} cases identical (plan and output)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

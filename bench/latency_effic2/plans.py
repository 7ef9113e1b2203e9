"""Build model, prune variants, export ONNX to /tmp/effic2/onnx/<model>_<variant>.onnx; print MACs ratios."""
import sys, json, time, copy
from pathlib import Path
sys.path.insert(0, "bench")
import torch, graphprune
from common import build_model
from graphprune.testing import counted_macs
from graphprune.export.onnx import export_onnx
out = Path("/tmp/effic2/onnx"); out.mkdir(parents=True, exist_ok=True)
name = sys.argv[1]; tag = sys.argv[2] if len(sys.argv) > 2 else "gp"
variants = sys.argv[3].split(",") if len(sys.argv) > 3 else ["dense", "gp"]
torch.manual_seed(0)
model = build_model(name).eval()
x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
dense = counted_macs(model, (x,))
info = {}
for v in variants:
    t = time.time()
    if v == "dense": m = model
    elif v == "gp": 
        res = graphprune.prune(model, 0.5, x, return_result=True); m = res.model
        print("\n".join(l for l in str(res.report).splitlines() if "shap" in l.lower() or "menu" in l.lower() or "width" in l.lower())[:2000])
    elif v == "tp":
        from latency import torch_pruning_at
        m, _ = torch_pruning_at(model, x)
    path = out / f"{name}_{tag if v=='gp' else v}.onnx"
    export_onnx(m, (x,), path)
    torch.save(m, out / f"{name}_{tag if v=='gp' else v}.pt")
    info[v] = counted_macs(m, (x,)) / dense
    print(name, v, f"macs {info[v]:.4f}", f"{time.time()-t:.1f}s", flush=True)

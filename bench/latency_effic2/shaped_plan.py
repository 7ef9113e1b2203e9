"""Plans under different proxy weights; prints moves, proxy gain, per-group widths diff. Saves model pt+onnx."""
import sys, time, json
from pathlib import Path
sys.path.insert(0, "bench")
import torch, graphprune, numpy as np, graphprune.search.allocate
from common import build_model
from graphprune.testing import counted_macs
from graphprune.export.onnx import export_onnx
import graphprune.search.cost as C, graphprune.search.time_shaping as TS
name, tag = sys.argv[1], sys.argv[2]
kw = dict(a.split("=") for a in sys.argv[3:])
if "mpe" in kw: C.TimeProxyCost.__init__.__defaults__ = (float(kw["mpe"]),)
for k in ("MIN_GAIN", "MIN_TOTAL_GAIN", "IMPORTANCE_SLACK", "MIN_KEPT_OF_ALLOCATED", "MAX_MOVES"):
    if k in kw: setattr(TS, k, type(getattr(TS, k))(kw[k]))
orig = TS.shape_for_time
def wrapped(*a, **k):
    r = orig(*a, **k); print(f"shaping: time {r.time_before:.4g} -> {r.time_after:.4g} ({r.time_after/r.time_before:.3f}), imp {r.importance_before:.4g} -> {r.importance_after:.4g}, {len(r.moves)} moves: {r.moves}"); return r
TS.shape_for_time = wrapped
A = sys.modules["graphprune.search.allocate"]; A.shape_for_time = wrapped
torch.manual_seed(0)
model = build_model(name).eval()
x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
t = time.time()
m = graphprune.prune(model, 0.5, x)
print("prune s", round(time.time() - t, 1))
out = Path("/tmp/effic2/onnx"); export_onnx(m, (x,), out / f"{name}_{tag}.onnx")
print(name, tag, "macs", counted_macs(m, (x,)) / counted_macs(model, (x,)))

import sys; sys.path.insert(0, "bench")
import torch, graphprune, numpy as np, graphprune.search.allocate
import graphprune.search.time_shaping as TS, graphprune.search.cost as C
A = sys.modules["graphprune.search.allocate"]
if len(sys.argv) > 2: C.TimeProxyCost.__init__.__defaults__ = (float(sys.argv[2]),)
def best_move(counts, lo, menus, keep_of, time_of, macs_of, importance_of, refill, now_t, floors):
    keep = keep_of(counts); now_macs = macs_of(keep); rates = []
    for gi in range(len(counts)):
        k = TS._narrower(menus, gi, int(counts[gi]), int(lo[gi]))
        if k is None: continue
        trial = counts.copy(); trial[gi] = k; nk = keep_of(trial)
        ft, fm = now_t - time_of(nk), now_macs - macs_of(nk)
        if ft > 0: rates.append((ft / max(fm, 1e-9), gi, trial))
    rs = sorted(rates, key=lambda r: -r[0])
    print(f"now_t {now_t:.4g}; {len(rates)} candidates; rates top: " + ", ".join(f"g{gi}:{r:.3g}" for r, gi, _ in rs[:6]))
    best = None
    for r, gi, trial in rs[:TS.CANDIDATES]:
        filled = refill(trial, gi); k = keep_of(filled); t = time_of(k)
        print(f"  g{gi} {counts[gi]}->{trial[gi]}: refill t {t/now_t:.4f} imp {importance_of(k)/floors[0]*(1-TS.IMPORTANCE_SLACK):.4f} macs {macs_of(k):.4g} floor {floors[1]:.4g}")
        if t < now_t * (1 - TS.MIN_GAIN) and importance_of(k) >= floors[0] and macs_of(k) >= floors[1] and (best is None or t < best[2]):
            best = (gi, filled, t)
    return best
TS._best_move = best_move
print("lo floors?")
from common import build_model
m = build_model(sys.argv[1]).eval()
graphprune.prune(m, 0.5, torch.randn(1, 3, 224, 224))

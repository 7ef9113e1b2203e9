"""Per class of node (1x1 conv, grouped conv, stem/3x3 conv, SE convs, other ops): dense vs pruned kernel ms and MACs."""
import sys, json, os, collections, onnx, numpy as np
from onnx import shape_inference
prof = json.load(open(sys.argv[1])); fd, fp = sys.argv[2], sys.argv[3]
def info(path):
    g = shape_inference.infer_shapes(onnx.load(path)).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in list(g.value_info) + list(g.output)}
    inits = {i.name: list(i.dims) for i in g.initializer}; out = {}
    for n in g.node:
        if n.op_type == "Conv":
            w = inits[n.input[1]]; o = shapes[n.output[0]]; grp = next((a.i for a in n.attribute if a.name == "group"), 1)
            kind = "conv dw" if grp > 1 and w[1] == 1 else f"conv grouped" if grp > 1 else ("conv SE(1x1 on 1x1)" if o[2] == 1 else f"conv {w[2]}x{w[3]}")
            m = (kind, float(np.prod(o)) * float(np.prod(w[1:])))
            cur = n
            while True:
                users = [u for u in g.node if cur.output[0] in u.input]
                if len(users) == 1 and users[0].op_type in ("Relu", "Add", "Sigmoid", "BatchNormalization", "Clip"):
                    cur = users[0]
                else:
                    break
            key = cur.name[5:] if cur.name.startswith("node_") else cur.name
            out[key] = m if key not in out else (out[key][0], out[key][1] + m[1])
    return out
Id, Ip = info(fd), info(fp)
Nd = prof["files"][os.path.basename(fd)]["nodes"]; Np = prof["files"][os.path.basename(fp)]["nodes"]
agg = collections.defaultdict(lambda: np.zeros(4))
for n, (op, td) in Nd.items():
    base = n[:-6] if n.endswith("_nchwc") else n
    if n.endswith("_bn_nchwc"): kind, md, mp = "BN+ReLU (as NCHWc dw conv)", 0, 0
    elif base in Id: kind, md, mp = Id[base][0], Id[base][1], Ip.get(base, ("", 0))[1]
    else: kind, md, mp = op, 0, 0
    agg[kind] += [td, Np.get(n, (op, 0))[1], md, mp]
T = sum(a[0] for a in agg.values()); Tp = sum(a[1] for a in agg.values()); M = sum(a[2] for a in agg.values()); Mp = sum(a[3] for a in agg.values())
print(f"kernel {T:.2f} -> {Tp:.2f} ms ({Tp/T:.3f}); conv MACs {M/1e6:.0f}M -> {Mp/1e6:.0f}M ({Mp/M:.3f})")
print("| node class | dense ms (share) | pruned ms | time ratio | MACs ratio |")
for k, a in sorted(agg.items(), key=lambda kv: -kv[1][0]):
    print(f"| {k} | {a[0]:.2f} ({a[0]/T:.1%}) | {a[1]:.2f} | {a[1]/a[0]:.3f} | {a[3]/a[2] if a[2] else float('nan'):.3f} |")

"""OpenVINO per-op profile (PERF_COUNT) + interleaved wall, 1 thread, precision P. Usage: ovprof.py PREC BATCH RUNS files..."""
import sys, os, time, json, statistics, collections
import numpy as np, openvino as ov
prec, batch, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]); files = sys.argv[4:]
x = np.random.RandomState(0).randn(batch, 3, 224, 224).astype(np.float32)
core = ov.Core()
def comp(f, perf):
    cfg = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": {"bf16": "bf16", "fp32": "f32"}[prec],
           "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if perf: cfg["PERF_COUNT"] = True
    m = core.read_model(f)
    if batch != 1: m.reshape([batch, 3, 224, 224])
    return core.compile_model(m, "CPU", cfg).create_infer_request()
reqs = [comp(f, False) for f in files]
for r in reqs: r.infer([x]); r.infer([x])
wall = [[] for _ in files]
for _ in range(runs):
    for i, r in enumerate(reqs):
        t = time.perf_counter(); r.infer([x]); wall[i].append(1e3 * (time.perf_counter() - t))
out = {"load": os.getloadavg()[0], "prec": prec, "batch": batch, "files": {}}
for f, w in zip(files, wall):
    r = comp(f, True)
    per = collections.defaultdict(list); meta = {}
    for _ in range(max(5, runs // 3)):
        r.infer([x])
        for p in r.get_profiling_info():
            if p.status == p.Status.EXECUTED:
                per[p.node_name].append(p.real_time.total_seconds() * 1e3); meta[p.node_name] = (p.node_type, p.exec_type)
    nodes = {n: (meta[n][0], meta[n][1], statistics.median(v)) for n, v in per.items()}
    by_type = collections.defaultdict(float); by_exec = collections.defaultdict(float)
    for n, (t_, e, ms) in nodes.items(): by_type[t_] += ms; by_exec[t_ + ":" + e] += ms
    out["files"][os.path.basename(f)] = {"wall_ms": statistics.median(w), "kernel_ms": sum(by_type.values()),
        "by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1])), "by_exec": dict(sorted(by_exec.items(), key=lambda kv: -kv[1])), "nodes": nodes}
print(json.dumps({k: v for k, v in out.items() if k != "files"}))
for f, d in out["files"].items():
    print(f, f"wall {d['wall_ms']:.2f} kernel {d['kernel_ms']:.2f}", {k: round(v, 2) for k, v in list(d["by_exec"].items())[:10]})
json.dump(out, open(os.environ.get("OUT", "/tmp/effic2/ovprof.json"), "w"))

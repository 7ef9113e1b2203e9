"""ORT profile (1 thread, batch B): per op type kernel time (median per node over runs, summed), for several onnx files.
Also interleaved wall medians. Usage: prof.py BATCH RUNS file1.onnx file2.onnx ..."""
import sys, json, os, time, statistics, collections
import numpy as np, onnxruntime as ort
batch, runs = int(sys.argv[1]), int(sys.argv[2]); files = sys.argv[3:]
x = np.random.RandomState(0).randn(batch, 3, 224, 224).astype(np.float32)
def sess(f, prof):
    o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL; o.log_severity_level = 3
    if prof: o.enable_profiling = True; o.profile_file_prefix = f"/tmp/effic2/prof_{os.path.basename(f)}"
    s = ort.InferenceSession(f, o, providers=["CPUExecutionProvider"]); return s
# wall interleaved
ss = [sess(f, False) for f in files]
name = ss[0].get_inputs()[0].name
for s in ss: s.run(None, {name: x}); s.run(None, {name: x})
wall = [[] for _ in files]
for r in range(runs):
    for i, s in enumerate(ss):
        t = time.perf_counter(); s.run(None, {name: x}); wall[i].append(1e3 * (time.perf_counter() - t))
out = {"load": os.getloadavg()[0], "batch": batch, "files": {}}
for f, w in (zip(files, wall) if os.environ.get("PROFILE", "1") == "1" else []):
    s = sess(f, True)
    for _ in range(2): s.run(None, {name: x})
    for _ in range(max(5, runs // 3)): s.run(None, {name: x})
    p = s.end_profiling(); ev = json.load(open(p)); os.remove(p)
    per_node = collections.defaultdict(list); optype = {}
    for e in ev:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            n = e["name"][:-len("_kernel_time")]; per_node[n].append(e["dur"]); optype[n] = e["args"]["op_name"]
    # drop 2 warmups
    bytype = collections.defaultdict(float); nodes = {}
    for n, d in per_node.items():
        med = statistics.median(d[2:] if len(d) > 3 else d) / 1e3
        bytype[optype[n]] += med; nodes[n] = (optype[n], med)
    out["files"][os.path.basename(f)] = {"wall_ms": statistics.median(w), "kernel_ms": sum(bytype.values()),
                                         "by_type": dict(sorted(bytype.items(), key=lambda kv: -kv[1])), "nodes": nodes}
print(json.dumps({k: v for k, v in out.items() if k != "files"}))
out["wall"] = {os.path.basename(f): statistics.median(w) for f, w in zip(files, wall)}; print(out["wall"])
for f, d in out["files"].items():
    print(f, f"wall {d['wall_ms']:.2f} kernel {d['kernel_ms']:.2f}", {k: round(v, 2) for k, v in d["by_type"].items()})
json.dump(out, open(os.environ.get("OUT", "/tmp/effic2/prof.json"), "w"))

import json, glob, os
out = {"machine": "2-core VM (Intel Xeon, avx512_bf16 + avx512_vnni, NO AMX after the 12:50 restart), onnxruntime 1.32.0, openvino 2026.4",
       "how": "/work/wt/quiet (alone on CPU 1, every other process pinned to CPU 0, OMP_NUM_THREADS=1); 1 intra-op thread; wall = median of interleaved session.run/infer rounds; kernel = per-node median over profiled runs, summed",
       "macs": {"densenet121": {"base": 0.49998, "s16": 0.49980, "tp": 0.5704}, "regnet_y_800mf": {"base": 0.4998, "tp": 0.4333},
                "resnet18": {"base": 0.4980}, "mobilenet_v2": {"base": 0.4998}},
       "runs": {}}
for f in sorted(glob.glob("os.environ.get("PROFILES", "/tmp/effic2") + "/*.json"")):
    d = json.load(open(f)); name = os.path.basename(f)[:-5]
    out["runs"][name] = {"load": d.get("load"), "batch": d.get("batch"), "precision": d.get("prec", "fp32"),
                         "runtime": "openvino-cpu" if name.startswith("ov") else "ort-cpu",
                         "wall_ms": d.get("wall") or {k: v["wall_ms"] for k, v in d["files"].items()},
                         "kernel_ms": {k: v["kernel_ms"] for k, v in d.get("files", {}).items()},
                         "by_type_ms": {k: v.get("by_exec", v["by_type"]) for k, v in d.get("files", {}).items()}}
print(json.dumps(out, indent=1)[:300])
json.dump(out, open("bench/results/latency_effic2.json", "w"), indent=1)

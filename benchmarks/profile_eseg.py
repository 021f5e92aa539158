"""Where does an ESeg variant spend its time on CPU? Stage split, op categories, ORT op types.

    python benchmarks/profile_eseg.py --model eseg_lite_s --size 512x1024 --threads 2 --runs 5

Prints three tables:
1. eager time of each stage (backbone, BiFPN incl. extra levels, head, final x4 upsample + crop),
   measured interleaved with torchvision's LRASPP so both see the same machine load;
2. torch.profiler self time grouped into depthwise conv, other conv, batch norm, activations,
   resampling (interpolate, max-pool), fusion arithmetic (mul/add/stack) and the rest;
3. ONNX Runtime's own per-op-type time (session profiling) for the same model at the same size.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

import eseg
from eseg.benchmark import build_model
from eseg.export import INPUT_NAME, export_onnx, parse_size


def stage_functions(model, x):
    """Callables for each stage, fed with cached inputs of the previous stage."""
    from eseg.models.padding import pad_to_multiple

    padded = pad_to_multiple(x, model.pad_multiple)
    feats = model.backbone(padded)
    pyramid = model.pyramid(feats)
    head = model.head(pyramid)
    scale = float(2**model.config.min_level)
    return {
        "backbone": lambda: model.backbone(padded),
        "bifpn (extra levels + fusion)": lambda: model.pyramid(feats),
        "head (resample to P2, fuse, refine, classify)": lambda: model.head(pyramid),
        "final x4 bilinear upsample + crop": lambda: F.interpolate(head, scale_factor=scale, mode="bilinear",
                                                                   align_corners=False)[..., : x.shape[-2], : x.shape[-1]],
        "whole model": lambda: model(x),
    }


def interleaved(entries: dict, runs: int) -> dict[str, float]:
    times = defaultdict(list)
    for fn in entries.values():
        fn()
    for r in range(runs):
        names = list(entries)
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            entries[name]()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(v) for name, v in times.items()}


CATEGORIES = [
    ("batch norm", ("batch_norm",)),
    ("activations", ("clamp", "hardtanh", "relu", "silu", "hardswish", "sigmoid")),
    ("resampling", ("upsample", "max_pool", "interpolate")),
    ("fusion arithmetic", ("aten::mul", "aten::add", "aten::div", "aten::stack", "aten::sum")),
    ("copies / padding", ("copy_", "constant_pad", "fill_", "cat", "slice")),
]


def op_categories(model, x) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        model(x)
    totals: dict[str, float] = defaultdict(float)
    for evt in prof.key_averages(group_by_input_shape=True):
        name, ms = evt.key, evt.self_cpu_time_total / 1e3
        if ("convolution" in name or "conv2d" in name) and ms > 0:
            shapes = evt.input_shapes
            weight = shapes[1] if len(shapes) > 1 else []
            category = "depthwise conv" if weight and len(weight) == 4 and weight[1] == 1 else "dense / pointwise conv"
            totals[category] += ms
            continue
        for category, keys in CATEGORIES:
            if any(k in name for k in keys):
                totals[category] += ms
                break
        else:
            totals["other"] += ms
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def ort_op_types(model, size, threads: int) -> dict[str, float]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "m.onnx", size=size)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        x = torch.randn(1, 3, *size).numpy()
        for _ in range(3):
            session.run(None, {INPUT_NAME: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            totals[e["args"]["op_name"]] += e["dur"] / 1e3 / 3  # per run
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="eseg_lite_s")
    parser.add_argument("--size", default="512x1024")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = parse_size(args.size)
    model = eseg.create_model(args.model).eval()
    peer = build_model("lraspp_mobilenet_v3_large")
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        entries = stage_functions(model, x)
        entries["LRASPP MobileNetV3-L (whole)"] = lambda: peer(x)
        stages = interleaved(entries, args.runs)
    print(f"## eager stage latency, {args.model} at {size[0]}x{size[1]}, {args.threads} threads (median of {args.runs}, ms)")
    for name, ms in stages.items():
        print(f"| {name} | {ms:.1f} |")
    cats = op_categories(model, x)
    total = sum(cats.values())
    print("\n## eager op categories (torch.profiler self CPU time, one forward)")
    for name, ms in cats.items():
        print(f"| {name} | {ms:.1f} ms | {100 * ms / total:.0f}% |")
    ops = ort_op_types(model, size, args.threads)
    total = sum(ops.values())
    print("\n## onnxruntime op types (session profiling, per run)")
    for name, ms in list(ops.items())[:12]:
        print(f"| {name} | {ms:.1f} ms | {100 * ms / total:.0f}% |")


if __name__ == "__main__":
    main()

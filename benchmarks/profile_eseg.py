"""Where does an ESeg model spend its time on CPU: stages, operators, pyramid levels.

    .venv/bin/python benchmarks/profile_eseg.py --model eseg_lite_s --size 512x1024 --threads 2 --runs 7

Prints four tables (docs/models.md quotes them):
1. eager time of each stage (backbone, pyramid, head, final upsample + crop), interleaved with
   torchvision's LRASPP so both see the same machine load;
2. torch.profiler self time in operator categories (depthwise / dense conv, batch norm,
   activations, resampling, fusion arithmetic, copies);
3. OpenVINO fp32 per-node time (PERF_COUNT) by stage and by node type, of the fixed-size graph;
4. the same OpenVINO time of the BiFPN nodes by pyramid level.
"""
from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

import eseg
from eseg.benchmark.models import build_model
from eseg.benchmark.timing import interleaved_times
from eseg.export.onnx import export_onnx
from eseg.models.padding import pad_to_multiple
from eseg.sizes import parse_size
from eseg.tables import markdown_table


def stage_functions(model, x) -> dict:
    """Callables for each stage, fed with cached inputs of the previous stage."""
    padded = pad_to_multiple(x, model.input_stride)
    feats = model.backbone(padded)
    pyramid = model.pyramid(feats)
    head = model.head(pyramid)
    return {
        "backbone": lambda: model.backbone(padded),
        "pyramid (laterals, extra levels, BiFPN)": lambda: model.pyramid(feats),
        "head (progressive fusion, refine, classify)": lambda: model.head(pyramid),
        "final bilinear upsample + crop": lambda: F.interpolate(head, size=padded.shape[-2:], mode="bilinear",
                                                                align_corners=False)[..., : x.shape[-2], : x.shape[-1]],
        "whole model": lambda: model(x),
    }


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
            weight = evt.input_shapes[1] if len(evt.input_shapes) > 1 else []
            totals["depthwise conv" if weight and len(weight) == 4 and weight[1] == 1 else "dense / pointwise conv"] += ms
            continue
        category = next((c for c, keys in CATEGORIES if any(k in name for k in keys)), "other")
        totals[category] += ms
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


STAGES = (("/backbone/", "backbone"), ("/pyramid/lateral", "laterals"), ("/pyramid/extra", "extra levels"),
          ("/pyramid/layers", "BiFPN nodes"), ("/head/", "head"))


def openvino_profile(model, size, threads: int, runs: int) -> tuple[dict, dict, dict]:
    """Median per-node OpenVINO fp32 time grouped by stage, node type and BiFPN node."""
    import openvino as ov

    with tempfile.TemporaryDirectory() as work:
        path = export_onnx(model, Path(work) / "m.onnx", size=size)
        compiled = ov.Core().compile_model(str(path), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
            "PERF_COUNT": True})
    request = compiled.create_infer_request()
    x = torch.randn(1, 3, *size).numpy()
    request.infer({0: x})
    collected: list[list[dict]] = [[], [], []]
    for _ in range(runs):
        request.infer({0: x})
        by: list[dict] = [defaultdict(float), defaultdict(float), defaultdict(float)]
        for node in request.get_profiling_info():
            if node.status == node.Status.EXECUTED:
                add_node(by, node)
        for i in range(3):
            collected[i].append(by[i])
    return tuple({k: statistics.median(d.get(k, 0.0) for d in group) for k in {k for d in group for k in d}}
                 for group in collected)  # type: ignore[return-value]


def add_node(by: list[dict], node) -> None:
    ms = node.real_time.total_seconds() * 1e3
    name = node.node_name
    by[0][next((stage for key, stage in STAGES if key in name), "pad, final upsample, crop, output")] += ms
    by[1][node.node_type] += ms
    level = re.search(r"/layers\.\d+/(top_down|bottom_up)\.(\d+)/", name)
    if level:
        by[2][f"node {level.group(1)} #{level.group(2)}"] += ms


def print_table(title: str, values: dict, total: float | None = None) -> None:
    total = total or sum(values.values())
    rows = [[key, f"{ms:.1f}", f"{100 * ms / total:.0f}%"] for key, ms in sorted(values.items(), key=lambda kv: -kv[1])]
    print(f"\n{title}\n" + markdown_table(["part", "ms", "share"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="eseg_lite_s")
    parser.add_argument("--size", type=parse_size, default=(512, 1024))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = eseg.create_model(args.model).eval()
    peer = build_model("lraspp_mobilenet_v3_large")
    x = torch.randn(1, 3, *args.size)
    with torch.inference_mode():
        entries = {**stage_functions(model, x), "LRASPP-MobileNetV3-L (whole)": lambda: peer(x)}
        times = interleaved_times(entries, runs=args.runs, warmup=1, device=torch.device("cpu"))
    stages = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    print(f"# {args.model} at {args.size[0]}x{args.size[1]}, {args.threads} threads, median of {args.runs}")
    print_table("## eager stages (ms)", stages, stages["whole model"])
    print_table("## eager operator categories (torch.profiler self time, one forward)", op_categories(model, x))
    stage, kind, level = openvino_profile(model, args.size, args.threads, args.runs)
    print_table("## OpenVINO fp32 node time by stage (PERF_COUNT)", stage)
    print_table("## OpenVINO fp32 node time by node type", dict(sorted(kind.items(), key=lambda kv: -kv[1])[:12]))
    print_table("## OpenVINO fp32 BiFPN node time", level)


if __name__ == "__main__":
    main()

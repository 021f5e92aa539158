"""The lighter ESeg decoder step by step, each step timed against the previous in one run
(docs/models.md, "Lighter BiFPN and head").

    .venv/bin/python benchmarks/design_steps.py --size 512x1024 --backend openvino --runs 9

Every entry is eseg_lite_s's backbone (tf_efficientnet_lite0) with a decoder from the list below,
exported as a fixed-size graph and timed interleaved with torchvision's LRASPP-MobileNetV3-L,
batch 1, 2 threads, OpenVINO in fp32 (or onnxruntime / eager), random init.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from pathlib import Path

import torch

from eseg.benchmark.models import build_model
from eseg.benchmark.prepare import prepare_variant
from eseg.benchmark.timing import interleaved_times
from eseg.flops import count_macs, count_params
from eseg.models.registry import create_model
from eseg.sizes import parse_size
from eseg.tables import markdown_table

# Each step keeps the previous ones (eseg 0.1's decoder was the first row, padded to 512).
STEPS = {
    "BiFPN P2-P9, W64 D3, weighted head (0.1's decoder)": dict(fpn_min_level=2, fpn_width=64, fpn_repeats=3,
                                                              head_width=64, head_kind="weighted"),
    "+ progressive head": dict(fpn_min_level=2, fpn_width=64, fpn_repeats=3, head_width=64),
    "+ BiFPN from P3 (P2 reaches the head as a lateral)": dict(fpn_min_level=3, fpn_width=64, fpn_repeats=3,
                                                               head_width=64),
    "+ W48, D2 (eseg_lite_s)": dict(fpn_min_level=3, fpn_width=48, fpn_repeats=2, head_width=48),
}


def entries(size, backend: str, threads: int, work: Path) -> tuple[dict, dict]:
    models = {name: create_model("eseg_lite_s", **options).eval() for name, options in STEPS.items()}
    models["LRASPP-MobileNetV3-L (torchvision)"] = build_model("lraspp_mobilenet_v3_large")
    calls, costs = {}, {}
    for i, (name, model) in enumerate(models.items()):
        costs[name] = (count_params(model) / 1e6, count_macs(model, size) / 1e9)
        runnable = prepare_variant(copy.deepcopy(model), backend, size, device=torch.device("cpu"), threads=threads,
                                   onnx_path=work / f"m{i}.onnx", precision="fp32")
        x = runnable.make_input(1)
        calls[name] = lambda r=runnable, x=x: r.fn(x)
    return calls, costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(512, 1024))
    parser.add_argument("--backend", default="openvino", choices=("openvino", "onnxruntime", "eager"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        calls, costs = entries(args.size, args.backend, args.threads, Path(work))
        times = interleaved_times(calls, runs=args.runs, warmup=2, device=torch.device("cpu"))
    peer = statistics.median(times["LRASPP-MobileNetV3-L (torchvision)"])
    print(f"{args.size[0]}x{args.size[1]}, {args.backend} (fp32), {args.threads} threads, batch 1, "
          f"median of {args.runs} interleaved rounds")
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(markdown_table(["decoder", "params (M)", "GMACs", "latency (ms)", "/ LRASPP"],
                         [[name, f"{costs[name][0]:.2f}", f"{costs[name][1]:.2f}", f"{1000 * median:.1f}",
                           f"{median / peer:.2f}x"] for name, median in medians.items()]))


if __name__ == "__main__":
    main()

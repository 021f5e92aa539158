"""What bounds eseg_lite_s on CPU: its backbone against whole peers (docs/benchmark.md).

    .venv/bin/python benchmarks/lite_s_bounds.py [--size 512x1024] [--threads 2] [--runs 5]

GMACs by eseg.flops.count_macs; eager latency of each entry timed in one interleaved loop
(eseg.benchmark.interleaved_times), batch 1, median of --runs rounds.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from eseg.benchmark import build_model, interleaved_times
from eseg.cli import parse_size
from eseg.flops import count_macs


def entries() -> dict[str, torch.nn.Module]:
    eseg = build_model("eseg_lite_s")
    lraspp = build_model("lraspp_mobilenet_v3_large")
    return {
        "eseg_lite_s": eseg,
        "eseg_lite_s backbone (tf_efficientnet_lite0)": eseg.backbone,
        "lraspp_mobilenet_v3_large": lraspp,
        "lraspp backbone (mobilenet_v3_large)": lraspp.model.backbone,
        "smp_deeplabv3plus (tu-tf_efficientnet_lite0, needs eseg[bench])": build_model("smp_deeplabv3plus"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(512, 1024))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = entries()
    x = torch.randn(1, 3, *args.size)
    macs = {name: count_macs(model, args.size) / 1e9 for name, model in models.items()}

    def call(model):
        with torch.inference_mode():
            return model(x)

    times = interleaved_times({n: (lambda m=m: call(m)) for n, m in models.items()},
                              runs=args.runs, warmup=2, device=torch.device("cpu"))
    print(f"{args.size[0]}x{args.size[1]}, batch 1, {args.threads} threads, eager, median of {args.runs}")
    print("| module | GMACs | latency (ms) |\n|---|---|---|")
    for name in models:
        print(f"| {name} | {macs[name]:.2f} | {1000 * statistics.median(times[name]):.0f} |")


if __name__ == "__main__":
    main()

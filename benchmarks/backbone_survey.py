"""Which backbone for a real-time ESeg on a CPU: latency against ImageNet top-1 (docs/benchmark.md).

    .venv/bin/python benchmarks/backbone_survey.py --size 512x1024 --out docs
    .venv/bin/python benchmarks/backbone_survey.py --size 720x1280 --out docs

Every entry is ESeg with eseg_lite_s's decoder (BiFPN P3-P9, W48, D2, progressive head) on one timm
backbone (re-parameterised where the backbone has a deploy form), exported as a fixed-size graph and
run by OpenVINO in fp32, 2 threads, batch 1, random init, all entries and torchvision's
LRASPP-MobileNetV3-L interleaved in one loop (median of --runs rounds). Writes
``backbone_survey_<size>.json`` and ``img/backbone_survey_<size>.png`` into --out and prints the
table. Top-1 is each backbone's timm default weights on ImageNet-1k val, from timm's published
``results/results-imagenet.csv`` (huggingface/pytorch-image-models at commit aa4b5850c1543fa4),
the row at the weights' own test size.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from pathlib import Path

import torch

from eseg import fileio
from eseg.benchmark.models import build_model
from eseg.benchmark.prepare import prepare_variant
from eseg.benchmark.timing import interleaved_times
from eseg.flops import count_macs, count_params
from eseg.models.registry import create_model
from eseg.sizes import format_size, parse_size
from eseg.tables import markdown_table

# backbone -> (timm default weights tag, ImageNet-1k top-1 %), from timm's results-imagenet.csv
TOP1 = {
    "mobilenetv4_conv_small": ("e2400_r224_in1k", 73.756),
    "lcnet_100": ("ra2_in1k", 72.130),
    "mobileone_s0": ("apple_in1k", 71.398),
    "ghostnetv2_100": ("in1k", 75.186),
    "mobilenetv3_large_100": ("ra_in1k", 75.784),
    "mnasnet_100": ("rmsp_in1k", 74.672),
    "mobilenetv2_100": ("ra_in1k", 72.910),
    "hgnetv2_b0": ("ssld_stage2_ft_in1k", 77.362),
    "hgnetv2_b1": ("ssld_stage2_ft_in1k", 78.884),
    "regnetx_004": ("pycls_in1k", 72.482),
    "fbnetv3_b": ("ra2_in1k", 78.184),
    "repvit_m0_9": ("dist_300e_in1k", 78.652),
    "mobilenetv4_conv_medium": ("e500_r256_in1k", 79.916),
    "efficientnet_lite0": ("ra_in1k", 75.488),
    "tf_efficientnet_lite0": ("in1k", 74.846),
    "tf_efficientnet_lite1": ("in1k", 76.674),
    "tf_efficientnet_lite2": ("in1k", 77.470),
    "tf_efficientnet_lite3": ("in1k", 79.808),
    "tf_efficientnet_lite4": ("in1k", 81.540),
    "efficientnet_b0": ("ra_in1k", 77.698),
    "efficientnet_b1": ("ra4_e3600_r240_in1k", 80.404),
    "efficientnet_b2": ("ra_in1k", 79.324),
}
PEER = "LRASPP-MobileNetV3-L"
EFFICIENTNETS = ("efficientnet", "tf_efficientnet")


def build(backbone: str) -> torch.nn.Module:
    from timm.utils.model import reparameterize_model

    model = create_model("eseg_lite_s", backbone=backbone).eval()
    model.backbone.model = reparameterize_model(model.backbone.model)  # deploy form (MobileOne, RepViT); else a no-op
    return model


def measure(size, names: list[str], runs: int, threads: int) -> tuple[dict, dict]:
    models = {name: build(name) for name in names}
    models[PEER] = build_model("lraspp_mobilenet_v3_large")
    calls, costs = {}, {}
    with tempfile.TemporaryDirectory() as work:
        for i, (name, model) in enumerate(models.items()):
            costs[name] = (count_params(model) / 1e6, count_macs(model, size) / 1e9)
            runnable = prepare_variant(copy.deepcopy(model), "openvino", size, device=torch.device("cpu"),
                                       threads=threads, onnx_path=Path(work) / f"m{i}.onnx", precision="fp32")
            x = runnable.make_input(1)
            calls[name] = lambda r=runnable, x=x: r.fn(x)
        times = interleaved_times(calls, runs=runs, warmup=2, device=torch.device("cpu"))
    return times, costs


def rows(times: dict, costs: dict) -> list[dict]:
    peer = statistics.median(times[PEER])
    out = []
    for name, values in times.items():
        median = statistics.median(values)
        out.append({"backbone": name, "params_M": round(costs[name][0], 2), "GMACs": round(costs[name][1], 2),
                    "latency_ms": round(1000 * median, 1), "vs_lraspp": round(median / peer, 3),
                    "top1": TOP1.get(name, (None, None))[1], "weights": TOP1.get(name, (None, None))[0]})
    return sorted(out, key=lambda r: r["vs_lraspp"])


def plot(table: list[dict], size, path: Path) -> None:
    from matplotlib.figure import Figure

    from eseg.viz import save_figure

    fig = Figure(figsize=(7.5, 5), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    for row in (r for r in table if r["top1"] is not None):
        efficient = row["backbone"].startswith(EFFICIENTNETS)
        ax.scatter(row["vs_lraspp"], row["top1"], c="tab:orange" if efficient else "tab:blue", s=30)
        ax.annotate(row["backbone"], (row["vs_lraspp"], row["top1"]), fontsize=6.5, xytext=(3, 2),
                    textcoords="offset points")
    ax.axvline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xlabel(f"ESeg latency / LRASPP-MobileNetV3-L, OpenVINO fp32, {format_size(size)}, 2 threads")
    ax.set_ylabel("backbone ImageNet-1k top-1 (%, timm's results-imagenet.csv)")
    ax.set_title("ESeg (eseg_lite_s decoder) on each backbone: orange = EfficientNet family", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(512, 1024))
    parser.add_argument("--backbones", default=",".join(TOP1), help="comma-separated timm names")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/backbone_survey"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    times, costs = measure(args.size, args.backbones.split(","), args.runs, args.threads)
    table = rows(times, costs)
    tag = format_size(args.size)
    fileio.write_json(args.out / f"backbone_survey_{tag}.json", {"size": list(args.size), "rows": table})
    plot(table, args.size, args.out / "img" / f"backbone_survey_{tag}.png")
    print(f"{tag}, OpenVINO fp32, {args.threads} threads, batch 1, median of {args.runs} interleaved rounds")
    print(markdown_table(["backbone", "params (M)", "GMACs", "latency (ms)", "/ LRASPP", "top-1 (%)"],
                         [[r["backbone"], r["params_M"], r["GMACs"], r["latency_ms"], f"{r['vs_lraspp']:.2f}x",
                           r["top1"] if r["top1"] is not None else "–"] for r in table]))


if __name__ == "__main__":
    main()

"""The speed issue's targets, read from `eseg benchmark` results (each ratio measured in one run).

    .venv/bin/python benchmarks/speed_targets.py runs/bench_512/results.json runs/bench_720/results.json ...

Targets (OpenVINO fp32, 2 threads, batch 1, random init, one interleaved run per size):
- eseg_lite_s <= 1.2x LRASPP at 512x1024, 720x1280 and 1080x1920;
- eseg_lite_s <= 0.5x smp DeepLabV3+ with the same encoder at 512x1024;
- the fastest registered ESeg variant under 8 M parameters <= 0.8x LRASPP at 512x1024 and 720x1280;
- OpenVINO >= 1.4x onnxruntime for eseg_lite_s at 512x1024.
Design goals belong here, outside the package: `eseg benchmark` itself reports ratios, not verdicts.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from eseg.tables import markdown_table

LRASPP, SMP = "lraspp_mobilenet_v3_large", "smp_deeplabv3plus"


def latency(doc: dict, model: str, backend: str = "openvino") -> float | None:
    return next((r["latency_ms_median"] for r in doc["results"]
                 if r["model"] == model and r["backend"] == backend and r["latency_ms_median"]), None)


def ratio(doc: dict, model: str, peer: str, backend: str = "openvino") -> float | None:
    a, b = latency(doc, model, backend), latency(doc, peer, backend)
    return a / b if a and b else None


def fastest_small(doc: dict) -> str | None:
    """The fastest eseg model under 8 M parameters on OpenVINO in this run."""
    rows = [r for r in doc["results"] if r["model"].startswith("eseg_") and r["backend"] == "openvino"
            and r["latency_ms_median"] and r["params_m"] < 8]
    return min(rows, key=lambda r: r["latency_ms_median"])["model"] if rows else None


def checks(doc: dict) -> list[tuple[str, float | None, float, bool]]:
    size = "x".join(map(str, doc["settings"]["size"]))
    out = [(f"eseg_lite_s / LRASPP, {size}", ratio(doc, "eseg_lite_s", LRASPP), 1.2, True)]
    if size == "512x1024" and doc["settings"]["encoder"] == "tf_efficientnet_lite0":
        out.append((f"eseg_lite_s / smp DeepLabV3+ (tu-tf_efficientnet_lite0), {size}", ratio(doc, "eseg_lite_s", SMP),
                    0.5, True))
    small = fastest_small(doc)
    if small and size in ("512x1024", "720x1280"):
        out.append((f"fastest eseg under 8 M params ({small}) / LRASPP, {size}", ratio(doc, small, LRASPP), 0.8, True))
    ov, ort = latency(doc, "eseg_lite_s"), latency(doc, "eseg_lite_s", "onnxruntime")
    if size == "512x1024" and ov and ort:
        out.append((f"eseg_lite_s onnxruntime / OpenVINO latency (OpenVINO speed-up), {size}", ort / ov, 1.4, False))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json files of eseg benchmark")
    args = parser.parse_args()
    rows = []
    for path in args.results:
        doc = json.loads(path.read_text(encoding="utf-8"))
        precision = doc["settings"]["precision"]
        for text, value, limit, at_most in checks(doc):
            met = value is not None and (value <= limit if at_most else value >= limit)
            rows.append([f"{text} (OpenVINO {precision})", "–" if value is None else f"{value:.2f}x",
                         f"{'<=' if at_most else '>='} {limit}x", "yes" if met else "no"])
    print(markdown_table(["target", "measured", "limit", "met"], rows))


if __name__ == "__main__":
    main()

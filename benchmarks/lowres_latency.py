"""Image-to-mask latency of a low-resolution graph against its full-resolution graph, OpenVINO.

    .venv/bin/python benchmarks/lowres_latency.py --sizes 512x1024 720x1280 --threads 2 --runs 11 [--fit-steps 60]

The model (the registered ``eseg_lite_s`` with ``--classes`` classes, random weights unless
``--weights`` names a trained model folder; ``--fit-steps`` first fits it with the end-to-end
benchmark's loop) is exported twice at each size, fixed-size, fp32:
with eseg's default output (the head's low-resolution logits) and with ``--full-resolution``.
Timed in turn in every round (so machine load hits all alike), medians of ``--runs`` rounds after
one warm-up round, on one synthetic street image:

- ``full network``: the full-resolution graph alone (the bound the low-resolution path is held to);
- ``full + argmax``: that graph and numpy's argmax of its logits (the mask, as it was made);
- ``lowres network``: the low-resolution graph alone;
- ``lowres -> mask (model logits)``: ``Segmenter.masks_from_tensors`` on the low-resolution graph
  (pad, network, :func:`~eseg.inference.lowres.lowres_argmax`) with this model's own logits;
- ``lowres -> mask (street logits)``: the low-resolution graph, then the rule on the logits a
  network that sees the street scene would give (its labels one-hot, plus noise: the
  ``benchmarks/lowres_argmax.py`` ``street`` logits), since the rule's cost depends on how many
  cells disagree and random weights do not give a trained model's logits.

Each mask is checked equal to the argmax of F.interpolate of the same logits before timing.
The share of disagreeing cells of both logits is printed beside the figures.
"""
import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import eseg
from eseg.benchmark.fit import FitPlan, fit_model, synthetic_batches
from eseg.data.synthetic import render_street
from eseg.data.transforms import normalize
from eseg.export.onnx import export_onnx
from eseg.export.openvino import save_openvino
from eseg.inference.lowres import MARGIN, Upsample, cell_labels, lowres_argmax, reference_mask
from eseg.runtimes.openvino import OpenVINORunner
from eseg.sizes import parse_size
from eseg.tables import markdown_header, markdown_row

sys.path.insert(0, str(Path(__file__).parent))
from lowres_argmax import logits as street_like  # noqa: E402  (street-scene logits: a trained model's stand-in)
from lowres_argmax import round_robin_seconds  # noqa: E402

COLUMNS = ("size", "full network ms", "full + argmax ms", "lowres network ms", "lowres -> mask (model logits) ms",
           "lowres -> mask (street logits) ms", "ratio model logits", "ratio street logits", "rule alone ms (model / street)",
           "disagreeing cells (model / street)")


def disagreeing(low: np.ndarray) -> float:
    cells, sentinel = cell_labels(low, MARGIN * float(np.abs(low).max()))
    return float((cells == sentinel).mean())


def medians_ms(fns: list, runs: int) -> list[float]:
    return [1000 * statistics.median(spent) for spent in round_robin_seconds(fns, runs)]


def graphs(model, size, threads: int, work: Path) -> tuple[OpenVINORunner, OpenVINORunner]:
    runners = []
    for output in ("full", "lowres"):
        onnx_path = export_onnx(model, work / f"{output}_{size[0]}x{size[1]}.onnx", size=size, output=output)
        xml = save_openvino(onnx_path, onnx_path.with_suffix(".xml"), precision="fp32")
        runners.append(OpenVINORunner(xml, threads=threads))
    return runners[0], runners[1]


def row(model, size, args, work: Path) -> str:
    full, low = graphs(model, size, args.threads, work)
    image = normalize(render_street(np.random.default_rng(0), size)[0], model.config.mean, model.config.std)
    batch = image[None]
    seg = eseg.Segmenter(low)
    upsample = Upsample.model_forward(size, low.info.input_stride)
    model_low = low(batch)[0].numpy()
    street = street_like("street", model.num_classes, padded(size, low.info.input_stride))
    for logits in (model_low, street):  # exact before timed
        assert np.array_equal(lowres_argmax(logits, upsample), reference_mask(logits, upsample))
    assert np.array_equal(seg.masks_from_tensors([image])[0], lowres_argmax(model_low, upsample))
    fns = [lambda: full(batch), lambda: full(batch)[0].numpy().argmax(0).astype(np.uint8), lambda: low(batch),
           lambda: seg.masks_from_tensors([image]), lambda: (low(batch), lowres_argmax(street, upsample)),
           lambda: lowres_argmax(model_low, upsample), lambda: lowres_argmax(street, upsample)]
    net, net_argmax, low_net, low_model, low_street, rule_model, rule_street = medians_ms(fns, args.runs)
    return markdown_row([f"{size[0]}x{size[1]}", f"{net:.1f}", f"{net_argmax:.1f}", f"{low_net:.1f}", f"{low_model:.1f}",
                         f"{low_street:.1f}", f"{low_model / net:.3f}", f"{low_street / net:.3f}",
                         f"{rule_model:.1f} / {rule_street:.1f}",
                         f"{100 * disagreeing(model_low):.1f}% / {100 * disagreeing(street):.1f}%"])


def padded(size, stride):
    return (-(-size[0] // stride) * stride, -(-size[1] // stride) * stride)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["512x1024", "720x1280"])
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--weights", help="a trained model folder (default: eseg_lite_s with random weights)")
    parser.add_argument("--fit-steps", type=int, default=0,
                        help="first fit the model on synthetic streets with `eseg benchmark --end-to-end`'s one loop "
                             "(eseg.benchmark.fit), so its logits, and the cells where they disagree, resemble a "
                             "trained model's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = eseg.load_model(args.weights) if args.weights else eseg.create_model("eseg_lite_s", num_classes=args.classes)
    weights = f"weights {args.weights}" if args.weights else "random weights"
    if args.fit_steps:
        plan = FitPlan(steps=args.fit_steps)
        record = fit_model(model, model.config.mean, model.config.std, synthetic_batches(plan), plan, name="the model")
        weights += f", fitted {record.steps} steps (loss {record.loss_first:.2f} -> {record.loss_last:.2f})"
    model.eval()
    print(f"{model.config.variant or model.config.arch}, {model.num_classes} classes, "
          f"{weights}; OpenVINO fp32, {args.threads} threads, "
          f"median of {args.runs} interleaved runs\n")
    print(markdown_header(COLUMNS), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            print(row(model, parse_size(size, "--sizes"), args, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()

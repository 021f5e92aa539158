"""``eseg export MODEL --format onnx|openvino [--size HxW | --dynamic] [--precision ...] [--out FILE|DIR/]``."""
from __future__ import annotations

import argparse

from ..export.formats import FORMATS, OPSET, PRECISIONS, QUANT_MODES
from . import options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="run folder (its best checkpoint) or model folder written by save_pretrained")
    parser.add_argument("--format", default="onnx", choices=list(FORMATS), help="onnx (.onnx) or openvino (.xml + .bin)")
    options.add_size(parser, help="input size of the graph (default: the one size the model was validated at; "
                                  "a dynamic graph when its validation images varied in size)")
    parser.add_argument("--dynamic", action="store_true", help="any height and width (the padding is computed in the graph)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32; onnx: fp16 or int8; openvino: bf16 (the CPU runs in bf16) or int8")
    parser.add_argument("--quantize-mode", default="static", choices=QUANT_MODES,
                        help="int8: static (calibrated activations, QDQ) or dynamic (onnx only)")
    parser.add_argument("--calib-data", help="int8 calibration data: 'synthetic' or a dataset spec YAML "
                                             "(default: the validation data below)")
    parser.add_argument("--eval-data", help="validation data for the int8 mIoU check: 'synthetic' or a dataset spec "
                                            "YAML (default: what the model's run recorded)")
    parser.add_argument("--eval-images", type=options.positive_int, default=16,
                        help="images used for calibration and the mIoU check")
    parser.add_argument("--full-resolution", action="store_true",
                        help="output full-resolution logits (N, C, H, W), for running the graph outside eseg; by "
                             "default the graph outputs the head's low-resolution logits and eseg reads the exact "
                             "mask from them (docs/deploy.md)")
    parser.add_argument("--simplify", action="store_true", help="simplify the ONNX graph with onnxslim")
    parser.add_argument("--opset", type=int, default=OPSET, help="ONNX opset")
    parser.add_argument("--threads", type=options.positive_int, help="threads for the parity checks")
    options.add_out(parser, None, "output file, its suffix added when missing; a folder (existing, or ending in '/') "
                                  "gets model.onnx|.xml inside (default: next to MODEL, "
                                  "model_<HxW|dynamic>[.precision].onnx|.xml)")
    options.add_overwrite(parser, "an existing output file")


def run(args: argparse.Namespace) -> int:
    from ..export.pipeline import ExportRequest, export_model

    request = ExportRequest(model=args.model, format=args.format, size=args.size, dynamic=args.dynamic,
                            simplify=args.simplify, precision=args.precision, quantize_mode=args.quantize_mode,
                            calib_data=args.calib_data, eval_data=args.eval_data, eval_images=args.eval_images,
                            opset=args.opset, threads=args.threads, out=args.out, overwrite=args.overwrite,
                            output="full" if args.full_resolution else "lowres")
    export_model(request)
    return 0

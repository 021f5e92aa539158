"""What writing predict's outputs costs: PNG level x (mask, colour mask) and JPEG quality x overlay.

    .venv/bin/python benchmarks/output_formats.py --size 1024x2048

One synthetic street scene (``eseg data synth``'s renderer) stands for an image; its label map
for a clean prediction, and the same labels through noisy stride-4 logits (the low-resolution
argmax rule) for a prediction with ragged borders and specks. Each format is encoded to memory
(no disk), best of ``--runs``; sizes in kB. The choice of the PNG level
(:data:`eseg.fileio.PNG_LEVEL`) and of the overlay format rests on this table.
"""
from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image

from eseg.data.synthetic import render_street
from eseg.inference.lowres import Upsample, lowres_argmax
from eseg.palette import get_palette
from eseg.sizes import parse_size
from eseg.tables import markdown_table
from eseg.viz import color_table, overlay

PNG_LEVELS = range(10)
JPEG_QUALITIES = (75, 85, 90, 95)


def encode(image: Image.Image, runs: int, **options) -> tuple[float, int]:
    """(best milliseconds, bytes) of saving ``image`` with PIL ``options``."""
    best, size = float("inf"), 0
    for _ in range(runs):
        buffer = io.BytesIO()
        start = time.perf_counter()
        image.save(buffer, **options)
        best = min(best, time.perf_counter() - start)
        size = buffer.tell()
    return 1000 * best, size


def ragged(label: np.ndarray, num_classes: int, stride: int = 4) -> np.ndarray:
    """``label`` as a network at ``stride`` with noisy logits would predict it."""
    low = label[stride // 2 :: stride, stride // 2 :: stride]
    logits = np.eye(num_classes, dtype=np.float32)[low].transpose(2, 0, 1)
    logits += np.random.default_rng(1).normal(0, 0.3, logits.shape).astype(np.float32)
    return lowres_argmax(logits, Upsample((low.shape[0] * stride, low.shape[1] * stride), label.shape))


def pictures(size: tuple[int, int], num_classes: int) -> dict[str, Image.Image]:
    image, label = render_street(np.random.default_rng(0), size)
    palette = get_palette(None, num_classes)
    out = {}
    for kind, mask in (("clean", label.astype(np.uint8)), ("ragged", ragged(label, num_classes))):
        colour = Image.frombuffer("P", (size[1], size[0]), mask, "raw", "P", 0, 1)
        colour.putpalette(color_table(palette).reshape(-1).tobytes())
        out.update({f"{kind} mask (L)": Image.fromarray(mask), f"{kind} colour (P, palette)": colour,
                    f"{kind} colour (RGB)": colour.convert("RGB")})
    out["overlay (RGB)"] = Image.fromarray(overlay(image, mask, palette))
    return out


def rows(size: tuple[int, int], runs: int, num_classes: int) -> list[tuple[str, str, float, int]]:
    out = []
    for name, picture in pictures(size, num_classes).items():
        for level in PNG_LEVELS:
            out.append((name, f"PNG level {level}", *encode(picture, runs, format="PNG", compress_level=level)))
        out.append((name, "PNG optimize=True", *encode(picture, runs, format="PNG", optimize=True)))
        if name == "overlay (RGB)":
            for quality in JPEG_QUALITIES:
                out.append((name, f"JPEG q{quality}", *encode(picture, runs, format="JPEG", quality=quality)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(1024, 2048))
    parser.add_argument("--classes", type=int, default=19, help="palette size (the synthetic mask uses 8 ids)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    table = [(name, fmt, f"{ms:.1f}", f"{size / 1024:.0f}") for name, fmt, ms, size in rows(args.size, args.runs,
                                                                                             args.classes)]
    print(markdown_table(("output", "format", "ms", "kB"), table))


if __name__ == "__main__":
    main()

"""The exact low-resolution argmax against argmax(F.interpolate(...)): time and disagreeing cells.

    .venv/bin/python benchmarks/lowres_argmax.py --size 1024x2048 --threads 1 2

Stride-4 logits of three kinds: ``iid`` (independent normal values: every cell disagrees, the
worst case, handed to torch past ``DENSE``), ``smooth`` (a few large regions with noisy borders)
and ``street`` (the labels of a synthetic street scene as a noisy network would score them).
Timed, best of ``--runs`` rounds (the three in turn in each round, so load hits all alike): the
rule (:func:`eseg.inference.lowres.lowres_argmax`: numpy, one thread whatever ``--threads``
says), torch's upsample + ``argmax(1)`` (today's Segmenter) and torch's upsample + numpy's
argmax. Every mask is checked equal to torch's before it is timed.
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from eseg.data.synthetic import render_street
from eseg.inference.lowres import MARGIN, Upsample, cell_labels, lowres_argmax
from eseg.sizes import parse_size
from eseg.tables import markdown_header, markdown_row

STRIDE = 4
COLUMNS = ("logits", "classes", "torch threads", "disagreeing cells", "rule ms", "interpolate + torch argmax ms",
           "interpolate + numpy argmax ms", "speed-up vs torch argmax")


def logits(kind: str, num_classes: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    low = (size[0] // STRIDE, size[1] // STRIDE)
    rng = np.random.default_rng(seed)
    if kind == "iid":
        return rng.standard_normal((num_classes, *low)).astype(np.float32)
    if kind == "smooth":
        coarse = torch.from_numpy(rng.standard_normal((1, num_classes, 8, 16)).astype(np.float32) * 4)
        smooth = F.interpolate(coarse, size=low, mode="bicubic", align_corners=False)[0].numpy()
        return smooth + rng.normal(0, 0.3, smooth.shape).astype(np.float32)
    _, label = render_street(rng, size)
    scores = np.eye(num_classes, dtype=np.float32)[label[STRIDE // 2 :: STRIDE, STRIDE // 2 :: STRIDE] % num_classes]
    noisy = scores.transpose(2, 0, 1) * 3 + rng.normal(0, 0.5, (num_classes, *low)).astype(np.float32)
    return np.ascontiguousarray(noisy)  # (C, h, w) in memory too, as a network's output is


def round_robin_seconds(fns: list, runs: int) -> list[list[float]]:
    """Seconds of every call of each of ``fns``, timed round-robin (machine load hits all alike);
    a first, warm-up round is not kept."""
    times: list[list[float]] = [[] for _ in fns]
    for round_ in range(runs + 1):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            if round_:
                spent.append(time.perf_counter() - start)
    return times


def best_ms(fns: list, runs: int) -> list[float]:
    """Best milliseconds of each of ``fns``, timed round-robin."""
    return [1000 * min(spent) for spent in round_robin_seconds(fns, runs)]


def row(kind: str, num_classes: int, size: tuple[int, int], threads: int, runs: int) -> str:
    torch.set_num_threads(threads)
    x = logits(kind, num_classes, size)
    tensor = torch.from_numpy(x)[None]
    upsample = Upsample(size)

    def torch_argmax():
        return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False).argmax(1)[0]

    def numpy_argmax():
        return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0].numpy().argmax(0)

    if not np.array_equal(lowres_argmax(x, upsample), torch_argmax().numpy()):
        raise AssertionError(f"{kind}, {num_classes} classes: the rule's mask differs from torch's")
    cells, mixed = cell_labels(x, MARGIN * float(np.abs(x).max()))
    share = float((cells == mixed).mean())
    times = best_ms([lambda: lowres_argmax(x, upsample), torch_argmax, numpy_argmax], runs)
    return markdown_row([kind, num_classes, threads, f"{100 * share:.1f} %", *(f"{t:.0f}" for t in times),
                         f"{times[1] / times[0]:.1f}x"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(1024, 2048))
    parser.add_argument("--classes", type=int, nargs="+", default=[8, 19])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kinds", nargs="+", default=["iid", "smooth", "street"])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.size[0]}x{args.size[1]}, logits at stride {STRIDE}; milliseconds, best of {args.runs}\n")
    print(markdown_header(COLUMNS))
    for kind in args.kinds:
        for num_classes in args.classes:
            for threads in args.threads:
                print(row(kind, num_classes, args.size, threads, args.runs), flush=True)


if __name__ == "__main__":
    main()

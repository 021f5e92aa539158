"""Parity of an exported graph with PyTorch: max |logit difference| and argmax agreement.

A graph with the ``lowres`` output contract (:mod:`eseg.runtimes.info`) is compared on what it
outputs, the head's low-resolution logits (against the model's ``forward_lowres``), and on its
masks: the exact argmax of their upsample (:func:`~eseg.inference.lowres.lowres_argmax`, the
model's own geometry) against the argmax of the model's full-resolution logits. Given the same
backend's full-resolution graph, the masks are compared with its argmax too.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import CheckpointError

PARITY_ATOL = 1e-3


def parity_sizes(size: tuple[int, int], dynamic: bool, multiple: int) -> list[tuple[int, int]]:
    """Sizes to check: the export size, then for a dynamic graph two sizes that need the in-graph
    pad (97x203 and 600x1000, or for small exports 97x203 and the export size + (37, 53)), each distinct."""
    if not dynamic:
        return [size]
    candidates = [size, (97, 203), (600, 1000)] if size[0] * size[1] >= 600 * 1000 else [size, (97, 203), (size[0] + 37, size[1] + 53)]
    sizes: list[tuple[int, int]] = []
    for s in candidates:
        if s not in sizes:
            sizes.append(s)
    if all(h % multiple == 0 and w % multiple == 0 for h, w in sizes):
        sizes.append((sizes[0][0] - 1, sizes[0][1] - 1))
    return sizes


def graph_masks(logits: torch.Tensor, info, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) masks of a graph's output for (N, 3, *size) inputs, as its contract says: the
    exact upsampled argmax of low-resolution logits, or the argmax of full-resolution ones."""
    from ..inference.lowres import Upsample, lowres_argmax

    if info is not None and info.lowres:
        upsample = Upsample.model_forward(size, info.input_stride, align_corners=info.align_corners)
        return lowres_argmax(logits, upsample)
    return logits.float().numpy().argmax(axis=1)


@torch.no_grad()
def check_parity(
    model: torch.nn.Module, runner, sizes: Sequence[tuple[int, int]], *, batch: int = 1, seed: int = 0,
    full_runner=None,
) -> list[dict]:
    """Max abs logit difference and argmax agreement of ``runner`` vs ``model`` on random inputs,
    for each size a dict: ``size``, ``output`` (the graph's contract), ``max_abs_diff`` and
    ``max_abs_logit`` (of the logits the graph outputs), ``argmax_agreement`` (the graph's masks
    against the argmax of the model's full-resolution logits) and, with ``full_runner`` (the same
    backend's full-resolution graph), ``full_graph_agreement``: the share of mask pixels
    identical to its argmax."""
    generator = torch.Generator().manual_seed(seed)
    info = getattr(runner, "info", None)
    lowres = info is not None and info.lowres
    results = []
    for size in sizes:
        x = torch.randn(batch, 3, *size, generator=generator)
        expected_full = model(x)
        expected = model.forward_lowres(x) if lowres else expected_full
        got = runner(x)
        if got.shape != expected.shape:
            raise CheckpointError(f"exported graph output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)} "
                                  f"at {size}" + (" (low-resolution output)" if lowres else ""))
        masks = graph_masks(got, info, size)
        result = {"size": list(size), "output": info.output if info is not None else "full",
                  "max_abs_diff": (got - expected).abs().max().item(),
                  "argmax_agreement": float((masks == expected_full.argmax(1).numpy()).mean()),
                  "max_abs_logit": expected.abs().max().item()}
        if full_runner is not None:
            result["full_graph_agreement"] = float((masks == graph_masks(full_runner(x), full_runner.info, size)).mean())
        results.append(result)
    return results


def format_parity(label: str, results: list[dict], atol: float | None) -> str:
    """One line per size; ``atol=None`` reports the numbers without a verdict (int8)."""
    lines = []
    for r in results:
        verdict = "" if atol is None else f" (tolerance {atol:g}) " + ("ok" if r["max_abs_diff"] <= atol else "FAIL")
        line = (f"  {label} {r['size'][0]}x{r['size'][1]}: max |logit diff| {r['max_abs_diff']:.2e}{verdict}; "
                f"max |logit| {r['max_abs_logit']:.2f}, argmax agreement {100 * r['argmax_agreement']:.3f}%")
        if "full_graph_agreement" in r:
            line += f"; masks identical to its full-resolution graph's: {100 * r['full_graph_agreement']:.3f}%"
        lines.append(line)
    return "\n".join(lines)

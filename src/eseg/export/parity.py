"""Parity of an exported graph with PyTorch: max |logit difference| and argmax agreement."""
from __future__ import annotations

from collections.abc import Sequence

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


@torch.no_grad()
def check_parity(
    model: torch.nn.Module, runner, sizes: Sequence[tuple[int, int]], *, batch: int = 1, seed: int = 0
) -> list[dict]:
    """Max abs logit difference and argmax agreement of ``runner`` vs ``model`` on random inputs."""
    generator = torch.Generator().manual_seed(seed)
    results = []
    for size in sizes:
        x = torch.randn(batch, 3, *size, generator=generator)
        expected = model(x)
        got = runner(x)
        if got.shape != expected.shape:
            raise CheckpointError(f"exported graph output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)} at {size}")
        diff = (got - expected).abs().max().item()
        agree = (got.argmax(1) == expected.argmax(1)).float().mean().item()
        results.append({"size": list(size), "max_abs_diff": diff, "argmax_agreement": agree,
                        "max_abs_logit": expected.abs().max().item()})
    return results


def format_parity(label: str, results: list[dict], atol: float | None) -> str:
    """One line per size; ``atol=None`` reports the numbers without a verdict (int8)."""
    lines = []
    for r in results:
        verdict = "" if atol is None else f" (tolerance {atol:g}) " + ("ok" if r["max_abs_diff"] <= atol else "FAIL")
        lines.append(
            f"  {label} {r['size'][0]}x{r['size'][1]}: max |logit diff| {r['max_abs_diff']:.2e}{verdict}; "
            f"max |logit| {r['max_abs_logit']:.2f}, argmax agreement {100 * r['argmax_agreement']:.3f}%"
        )
    return "\n".join(lines)

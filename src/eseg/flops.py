"""Parameter and MAC counts. MACs come from ``torch.utils.flop_counter`` (FLOPs / 2)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, size: tuple[int, int], batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass at (H, W), counted on the meta device.

    Runs on a meta-device copy, so even 1024x2048 on the largest model costs no real compute.
    """
    meta_model = _to_meta(model)
    x = torch.empty(batch, 3, *size, device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        meta_model(x)
    return counter.get_total_flops() // 2


def _to_meta(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to("meta").eval()  # counted in eval mode, as at inference

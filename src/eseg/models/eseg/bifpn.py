"""BiFPN as in EfficientDet, over pyramid levels min_level..max_level (default P2..P9).

Fusion weights use fast normalized fusion ``relu(w) / (sum(relu(w)) + 1e-4)``; every node is
activation -> depthwise 3x3 -> pointwise 1x1 -> BN. Upsampling is nearest, downsampling a 3x3
stride-2 max-pool with padding 1, which gives 'same' (ceil) sizes: level P_i of an H x W canvas
has ceil(H / 2**i) x ceil(W / 2**i) cells, down to 1 x 1. Upsampling targets the exact size of
the map it is fused with, so no level needs the canvas to be a multiple of 2**max_level (the
input is padded only to the backbone's stride; see eseg.models.padding).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..layers import ConvBN1x1, SeparableConvBN, activation, resize_like
from .config import EXTRA_KINDS, FPN_KINDS, FUSIONS

FUSION_EPS = 1e-4


def downsample() -> nn.MaxPool2d:
    """3x3 stride-2 max-pool with padding 1: an H x W map becomes ceil(H/2) x ceil(W/2)."""
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


class WeightedFusion(nn.Module):
    """Fuses same-shape inputs. 'fast': relu(w)/(sum+eps); 'attn': softmax(w); 'sum': plain sum."""

    def __init__(self, num_inputs: int, method: str = "fast") -> None:
        super().__init__()
        if method not in FUSIONS:
            raise ConfigError(f"unknown fusion method '{method}'; use one of {', '.join(FUSIONS)}")
        self.method = method
        self.weight = nn.Parameter(torch.ones(num_inputs)) if method != "sum" else None

    def forward(self, inputs: Iterable[torch.Tensor]) -> torch.Tensor:
        """``inputs`` may be a generator: each input is consumed as soon as it is added, so a
        caller that produces them lazily never holds them all at once (the head at P2)."""
        if self.method == "fast":
            w = F.relu(self.weight)
            w = w / (w.sum() + FUSION_EPS)
        elif self.method == "attn":
            w = torch.softmax(self.weight, dim=0)
        out = None
        for i, x in enumerate(inputs):
            term = x if self.weight is None else x * w[i]
            out = term if out is None else out + term
        return out


class FusionNode(nn.Module):
    """One BiFPN node: weighted fusion -> activation -> separable conv -> BN."""

    def __init__(self, num_inputs: int, width: int, fusion: str, act: str) -> None:
        super().__init__()
        self.fuse = WeightedFusion(num_inputs, fusion)
        self.act = activation(act)
        self.conv = SeparableConvBN(width, width)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.conv(self.act(self.fuse(inputs)))


class BiFPNLayer(nn.Module):
    """One top-down then bottom-up pass over ``num_levels`` maps of ``width`` channels.

    Inputs and outputs are ordered fine to coarse. Bottom-up inner nodes take three inputs (the
    layer input, the top-down feature and the downsampled finer output); end nodes take two.
    """

    def __init__(self, num_levels: int, width: int, fusion: str = "fast", act: str = "swish") -> None:
        super().__init__()
        self.num_levels = num_levels
        # top_down[i] produces level i (i = num_levels-2 .. 0); index by level offset.
        self.top_down = nn.ModuleList(FusionNode(2, width, fusion, act) for _ in range(num_levels - 1))
        self.bottom_up = nn.ModuleList(
            FusionNode(3 if i < num_levels - 1 else 2, width, fusion, act) for i in range(1, num_levels)
        )
        self.down = downsample()

    def forward(self, feats: list[torch.Tensor], static_shapes: bool = False) -> list[torch.Tensor]:
        n = self.num_levels
        top_down = [None] * n
        top_down[n - 1] = feats[n - 1]
        for i in range(n - 2, -1, -1):
            coarser = resize_like(top_down[i + 1], feats[i], "nearest", static_shapes=static_shapes)
            top_down[i] = self.top_down[i]([feats[i], coarser])
        outs = [top_down[0]]
        for i in range(1, n):
            inputs = [feats[i], top_down[i], self.down(outs[-1])] if i < n - 1 else [feats[i], self.down(outs[-1])]
            outs.append(self.bottom_up[i - 1](inputs))
        return outs


class FPNLayer(nn.Module):
    """A plain top-down FPN pass (sum fusion, no bottom-up path): the ablation baseline."""

    def __init__(self, num_levels: int, width: int, act: str = "swish") -> None:
        super().__init__()
        self.top_down = nn.ModuleList(FusionNode(2, width, "sum", act) for _ in range(num_levels - 1))

    def forward(self, feats: list[torch.Tensor], static_shapes: bool = False) -> list[torch.Tensor]:
        outs = list(feats)
        for i in range(len(feats) - 2, -1, -1):
            coarser = resize_like(outs[i + 1], feats[i], "nearest", static_shapes=static_shapes)
            outs[i] = self.top_down[i]([feats[i], coarser])
        return outs


class ExtraLevels(nn.Module):
    """Levels above the backbone, each from the one below it: 'maxpool' repeats a max-pool of the
    deepest level's lateral projection (one 1x1 conv+BN serves both; EfficientDet gives P6 a
    projection of its own, which cost parameters and measured no faster, see docs/models.md);
    'conv' learns each step (activation + stride-2 separable conv + BN), so the top levels see
    features of their own rather than the peak of the level below."""

    def __init__(self, num_extra: int, kind: str = "maxpool", width: int = 0, act: str = "swish") -> None:
        super().__init__()
        if kind not in EXTRA_KINDS:
            raise ConfigError(f"unknown extra-level kind '{kind}'; use one of {', '.join(EXTRA_KINDS)}")
        self.num_extra = num_extra
        if kind == "maxpool":
            self.steps = nn.ModuleList(downsample() for _ in range(num_extra))
        else:
            self.steps = nn.ModuleList(nn.Sequential(activation(act), SeparableConvBN(width, width, stride=2))
                                       for _ in range(num_extra))

    def forward(self, top: torch.Tensor) -> list[torch.Tensor]:
        extra = []
        x = top
        for step in self.steps:
            x = step(x)
            extra.append(x)
        return extra


class FeaturePyramid(nn.Module):
    """Backbone levels + extra levels, projected to ``width``, then ``repeats`` fusion layers over
    all but the ``num_side`` finest levels, which are returned as their lateral projection (they
    reach the head without passing through the BiFPN)."""

    def __init__(
        self,
        in_channels: list[int],
        *,
        num_extra: int,
        width: int,
        repeats: int,
        kind: str = "bifpn",
        fusion: str = "fast",
        act: str = "swish",
        num_side: int = 0,
        extra_kind: str = "maxpool",
    ) -> None:
        super().__init__()
        self.num_side = num_side
        self.extra = ExtraLevels(num_extra, extra_kind, width, act)
        self.lateral = nn.ModuleList(
            ConvBN1x1(c, width) if c != width else nn.Identity() for c in in_channels
        )
        num_levels = len(in_channels) + num_extra - num_side
        if kind == "bifpn":
            layers = [BiFPNLayer(num_levels, width, fusion, act) for _ in range(repeats)]
        elif kind == "fpn":
            layers = [FPNLayer(num_levels, width, act) for _ in range(repeats)]
        else:
            raise ConfigError(f"unknown fpn kind '{kind}'; use one of {', '.join(FPN_KINDS)}")
        self.layers = nn.ModuleList(layers)

    def forward(self, backbone_feats: list[torch.Tensor], static_shapes: bool = False) -> list[torch.Tensor]:
        feats = [lat(f) for lat, f in zip(self.lateral, backbone_feats)]
        feats = feats + self.extra(feats[-1])
        side, fused = feats[: self.num_side], feats[self.num_side:]
        for layer in self.layers:
            fused = layer(fused, static_shapes)
        return side + fused

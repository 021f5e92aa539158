"""Layers shared by the architectures: normalisation, activations and small conv blocks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .config import ACTIVATIONS
from .padding import spatial_size

BN_EPS = 1e-3  # EfficientDet's BN settings (TF momentum 0.99 == PyTorch 0.01)
BN_MOMENTUM = 0.01
ACTIVATION_MODULES = {"swish": nn.SiLU, "relu6": nn.ReLU6, "relu": nn.ReLU, "hardswish": nn.Hardswish}


class BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that also trains on one value per channel: the pyramid's top levels are 1 x 1
    for images under 512 px, and with one image per process a batch statistic would be a single
    value (PyTorch refuses it). Such a batch is normalized with the running statistics, which it
    leaves unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def resize_like(x: torch.Tensor, like: torch.Tensor, mode: str = "bilinear", *,
                static_shapes: bool = False) -> torch.Tensor:
    """``x`` resized to exactly the H x W of ``like`` (odd sizes included): read from ``like``'s
    shape in a dynamic graph, constants in a fixed-size one (``static_shapes``)."""
    return F.interpolate(x, size=spatial_size(like, static_shapes), mode=mode,
                         align_corners=False if mode == "bilinear" else None)


def batch_norm(channels: int, *, eps: float = BN_EPS, momentum: float = BN_MOMENTUM) -> nn.BatchNorm2d:
    return BatchNorm2d(channels, eps=eps, momentum=momentum)


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATION_MODULES:
        raise ConfigError(f"unknown activation '{name}'; use one of {', '.join(ACTIVATIONS)}")
    return ACTIVATION_MODULES[name]()


class SeparableConvBN(nn.Module):
    """Depthwise 3x3 + pointwise 1x1 + BN (no conv bias: BN follows). Stride 2 gives ceil sizes."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels,
                                   bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = batch_norm(out_channels)

    def forward(self, x):
        return self.bn(self.pointwise(self.depthwise(x)))


class ConvBN1x1(nn.Sequential):
    """Channel projection used where widths differ."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, 1, bias=False), batch_norm(out_channels))


def conv_bn_act(in_channels: int, out_channels: int, kernel: int, act: str, *, dilation: int = 1,
                eps: float = 1e-5) -> nn.Sequential:
    """Conv (``same`` padding) + BN + activation, as DeepLab builds its ASPP and decoder."""
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels, eps=eps),
        activation(act),
    )

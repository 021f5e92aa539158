"""Backbones: any timm CNN with ``features_only``, picked by the strides the pyramid needs."""
from __future__ import annotations

from pathlib import Path

import safetensors
import timm
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError


class TimmBackbone(nn.Module):
    """Wraps ``timm.create_model(features_only=True)`` and returns levels ``min_level..top_level``.

    Level ``l`` is the feature map of stride ``2**l``. ``top_level`` is the deepest level the
    backbone itself provides (5 for the usual 5-stage CNNs).
    """

    def __init__(
        self,
        name: str,
        *,
        min_level: int = 2,
        pretrained: bool = False,
        weights_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.model = create_timm_features(name, pretrained=pretrained, weights_path=weights_path)
        reductions = self.model.feature_info.reduction()
        channels = self.model.feature_info.channels()
        by_level = {int(r).bit_length() - 1: i for i, r in enumerate(reductions)}
        self.top_level = max(by_level)
        levels = list(range(min_level, self.top_level + 1))
        missing = [lvl for lvl in levels if lvl not in by_level]
        if missing:
            raise ConfigError(
                f"backbone '{name}' has feature strides {reductions}, so it cannot give levels "
                f"{missing} (stride 2**level); raise model.min_level or pick another backbone"
            )
        self.levels = levels
        self.indices = [by_level[lvl] for lvl in levels]
        self.channels = [channels[i] for i in self.indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.model(x)
        return [features[i] for i in self.indices]


class DilatedBackbone(nn.Module):
    """timm features at ``low_stride`` and at ``output_stride`` (the deepest stage; timm turns
    the strides beyond it into dilation): the two maps DeepLabV3+ and LR-ASPP decode."""

    def __init__(self, name: str, *, output_stride: int, low_stride: int, pretrained: bool = False,
                 weights_path: str | Path | None = None, needed_by: str = "this decoder") -> None:
        super().__init__()
        self.model = create_timm_features(name, pretrained=pretrained, weights_path=weights_path,
                                          output_stride=output_stride)
        reductions = self.model.feature_info.reduction()
        if low_stride not in reductions:
            raise ConfigError(f"backbone '{name}' has no stride-{low_stride} features (strides {reductions}); "
                              f"{needed_by} needs one")
        self.low_index = reductions.index(low_stride)
        self.channels = [self.model.feature_info.channels()[i] for i in (self.low_index, -1)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.model(x)
        return [features[self.low_index], features[-1]]


def create_timm_features(name: str, *, pretrained: bool, weights_path: str | Path | None, **timm_kwargs) -> nn.Module:
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:8]}*")[:8]
        raise ConfigError(f"unknown timm backbone '{name}'; similar names: {close or 'none'}")
    kwargs: dict = {"features_only": True, "pretrained": pretrained or weights_path is not None, **timm_kwargs}
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise CheckpointError(f"backbone weights file '{path}' does not exist")
        # timm's own loader drops the classifier and adapts the stem, as for hub weights.
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
    try:
        return timm.create_model(name, **kwargs)
    except (RuntimeError, safetensors.SafetensorError) as exc:
        if weights_path is None:
            raise
        raise weights_error(Path(weights_path), name, exc) from exc
    except TypeError as exc:
        raise ConfigError(f"timm backbone '{name}' does not support features_only: {exc}") from exc


def weights_error(path: Path, name: str, exc: Exception) -> CheckpointError:
    """What went wrong with a local backbone weights file, in the user's terms."""
    if isinstance(exc, safetensors.SafetensorError):
        return CheckpointError(f"backbone weights '{path}' are not a readable safetensors file ({exc}); a renamed "
                               "pickle is not safetensors: save the state dict with safetensors.torch.save_file")
    if "weights_only" in str(exc):
        return CheckpointError(f"backbone weights '{path}' are a pickle that needs code to load, and eseg loads "
                               "tensors only (torch.load weights_only=True); save the backbone's state dict as "
                               ".safetensors (safetensors.torch.save_file) or as a plain dict of tensors")
    return CheckpointError(f"backbone weights '{path}' do not fit '{name}': {exc}")

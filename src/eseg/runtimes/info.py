"""What pre- and post-processing need to know about a model, whatever runtime runs it."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Protocol

import torch

from ..models.config import ModelConfig


@dataclass(frozen=True)
class ModelInfo:
    """The runner metadata every backend carries, built from the model config in one place."""

    config: ModelConfig
    input_stride: int
    fixed_size: tuple[int, int] | None = None  # a static-shape graph accepts only this (H, W)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.config.mean)

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.config.std)

    @property
    def class_names(self) -> list[str]:
        return list(self.config.class_names or [str(i) for i in range(self.num_classes)])

    @property
    def palette(self) -> list[tuple[int, int, int]] | None:
        return self.config.palette

    @property
    def eval_size(self) -> tuple[int, int]:
        return tuple(self.config.eval_size)

    @property
    def train_crop(self) -> tuple[int, int]:
        return tuple(self.config.train_crop)

    def to_metadata(self) -> dict[str, str]:
        """String metadata embedded in exported graphs (ONNX metadata_props, OpenVINO rt_info)."""
        size = "dynamic" if self.fixed_size is None else f"{self.fixed_size[0]}x{self.fixed_size[1]}"
        return {META_CONFIG: json.dumps(self.config.to_dict()), META_INPUT_SIZE: size,
                META_INPUT_STRIDE: str(self.input_stride)}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], *, source: str) -> "ModelInfo":
        from ..errors import CheckpointError
        from ..models.base import config_from_dict
        from ..sizes import parse_size

        if META_CONFIG not in meta:
            raise CheckpointError(f"'{source}' has no '{META_CONFIG}' metadata; export it with 'eseg export' to use it here")
        try:
            config = config_from_dict(json.loads(meta[META_CONFIG]), source=f"{source} metadata")
            stride = int(meta[META_INPUT_STRIDE]) if META_INPUT_STRIDE in meta else input_stride_of(config)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"'{source}': unreadable eseg metadata ({exc}); re-export it") from exc
        size = meta.get(META_INPUT_SIZE, "dynamic")
        return cls(config, stride, None if size == "dynamic" else parse_size(size, f"{source} input size"))


def input_stride_of(config: ModelConfig) -> int:
    """The stride the one padding rule pads to (:mod:`eseg.models.padding`): the model's own
    ``input_stride``, read from its architecture built on the meta device (no memory, no weights).
    Graphs exported before their metadata recorded the stride need it."""
    from ..models.registry import ARCHITECTURES

    with torch.device("meta"):
        return int(ARCHITECTURES.get(config.arch)(copy.deepcopy(config)).input_stride)


META_CONFIG = "eseg_config"
META_INPUT_SIZE = "eseg_input_size"  # "HxW" for a fixed-size graph, "dynamic" otherwise
META_INPUT_STRIDE = "eseg_input_stride"


class Runner(Protocol):
    """What every backend provides (torch, onnxruntime, openvino), and all the Segmenter uses:
    normalized (N, 3, H, W) in, (N, num_classes, H, W) logits out, and the model's metadata."""

    info: ModelInfo
    device: torch.device

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...

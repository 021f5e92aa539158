"""What pre- and post-processing need to know about a model, whatever runtime runs it.

A runner's output follows one of two contracts, named by :attr:`ModelInfo.output`:

- ``full`` (:data:`OUTPUT_FULL`): (N, C, H, W) logits of the (N, 3, H, W) input, as the model's
  ``forward``; every graph exported before the contract was recorded is one.
- ``lowres`` (:data:`OUTPUT_LOWRES`): the head's (N, C, H'/s, W'/s) logits of the input padded
  to a multiple of ``input_stride`` (H' x W'), ``s`` = :attr:`ModelInfo.output_stride`. The
  model's forward would resize them bilinearly (``align_corners``) to H' x W' and crop H x W;
  the mask is the exact argmax of that resize (:func:`eseg.inference.lowres.lowres_argmax`),
  read without computing it in full. What ``eseg export`` writes by default.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Protocol

import torch

from ..models.config import ModelConfig

META_CONFIG = "eseg_config"
META_INPUT_SIZE = "eseg_input_size"  # "HxW" for a fixed-size graph, "dynamic" otherwise
META_INPUT_STRIDE = "eseg_input_stride"
META_OUTPUT = "eseg_output"  # the output contract: "lowres" or "full" (absent: full)
META_OUTPUT_STRIDE = "eseg_output_stride"  # lowres: the logits' stride in the padded input
META_ALIGN_CORNERS = "eseg_align_corners"  # lowres: "true" or "false", the resize to the padded size

OUTPUT_FULL = "full"
OUTPUT_LOWRES = "lowres"
OUTPUTS = (OUTPUT_LOWRES, OUTPUT_FULL)


@dataclass(frozen=True)
class ModelInfo:
    """The runner metadata every backend carries, built from the model config in one place."""

    config: ModelConfig
    input_stride: int
    fixed_size: tuple[int, int] | None = None  # a static-shape graph accepts only this (H, W)
    output: str = OUTPUT_FULL  # the output contract: OUTPUT_FULL or OUTPUT_LOWRES (see the module)
    output_stride: int | None = None  # lowres: the logits' stride in the padded input (None: unrecorded)
    align_corners: bool = False  # lowres: the bilinear resize that makes the full-resolution logits

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")

    @property
    def lowres(self) -> bool:
        """Whether the output is the low-resolution logits (the ``lowres`` contract)."""
        return self.output == OUTPUT_LOWRES

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
    def eval_size(self) -> tuple[int, int] | None:
        """None: the model validated on images of varied sizes (each at its own size)."""
        return None if self.config.eval_size is None else tuple(self.config.eval_size)

    @property
    def train_crop(self) -> tuple[int, int]:
        return tuple(self.config.train_crop)

    def to_metadata(self) -> dict[str, str]:
        """String metadata embedded in exported graphs (ONNX metadata_props, OpenVINO rt_info)."""
        size = "dynamic" if self.fixed_size is None else f"{self.fixed_size[0]}x{self.fixed_size[1]}"
        meta = {META_CONFIG: json.dumps(self.config.to_dict()), META_INPUT_SIZE: size,
                META_INPUT_STRIDE: str(self.input_stride), META_OUTPUT: self.output}
        if self.lowres:
            meta[META_ALIGN_CORNERS] = "true" if self.align_corners else "false"
            if self.output_stride is not None:
                meta[META_OUTPUT_STRIDE] = str(self.output_stride)
        return meta

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
        fixed = None if size == "dynamic" else parse_size(size, f"{source} input size")
        return cls(config, stride, fixed, **output_contract(meta, source))


def output_contract(meta: dict[str, str], source: str) -> dict:
    """``output``, ``output_stride`` and ``align_corners`` from a graph's metadata; a graph that
    records no contract (exported before it was recorded) is ``full``."""
    from ..errors import CheckpointError

    output = meta.get(META_OUTPUT, OUTPUT_FULL)
    corners = meta.get(META_ALIGN_CORNERS, "false")
    stride = meta.get(META_OUTPUT_STRIDE)
    if output not in OUTPUTS or corners not in ("true", "false") or not (stride is None or stride.isdigit()):
        raise CheckpointError(f"'{source}': unreadable output contract ({META_OUTPUT}={output!r}, "
                              f"{META_OUTPUT_STRIDE}={stride!r}, {META_ALIGN_CORNERS}={corners!r}; expected "
                              f"{' or '.join(OUTPUTS)}, a number, true or false); re-export it")
    return {"output": output, "output_stride": None if stride is None else int(stride),
            "align_corners": corners == "true"}


def input_stride_of(config: ModelConfig) -> int:
    """The stride the one padding rule pads to (:mod:`eseg.models.padding`): the model's own
    ``input_stride``, read from its architecture built on the meta device (no memory, no weights).
    Graphs exported before their metadata recorded the stride need it."""
    from ..models.registry import ARCHITECTURES

    with torch.device("meta"):
        return int(ARCHITECTURES.get(config.arch)(copy.deepcopy(config)).input_stride)


class Runner(Protocol):
    """What every backend provides (torch, onnxruntime, openvino), and all the Segmenter uses:
    normalized (N, 3, H, W) in, logits out as ``info.output`` says (full: (N, num_classes, H, W);
    lowres: the head's logits of the padded input), and the model's metadata."""

    info: ModelInfo
    device: torch.device

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...

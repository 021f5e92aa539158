"""Inference: whole image, sliding window and multi-scale + flip TTA, behind one ``Segmenter``.

Pre- and post-processing live here and nowhere else; the network is hidden behind a runner
(:mod:`eseg.runtimes`), so the same code drives PyTorch, ONNX Runtime and OpenVINO.

Modes
-----
- ``whole``: the image at its own size, or resized to ``size`` ((H, W) or ``"eval"`` for the
  model's ``eval_size``) with the logits resized back.
- ``slide``: ``crop`` windows every ``stride`` pixels (mmsegmentation's grid: the last window is
  shifted to end at the border); logits are averaged where windows overlap. A crop as large as the
  image is one window, which is exactly whole-image inference.
- ``tta``: whole-image inference at each of ``scales`` (default 0.5..1.75), with and without a
  horizontal flip; the logits are resized to the input size and averaged.
``scales`` and ``flip`` can also be combined with ``whole`` or ``slide`` explicitly.

The output always has the input's size. Batches group images by the canvas the one padding rule
gives them (``padded_size``), so an image gets the same logits alone or batched with larger ones.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from ..data.io import as_rgb
from ..data.transforms import normalize
from ..errors import CheckpointError, ConfigError, DataError
from ..models.padding import pad_to_size, padded_size
from ..runtimes import load_runner
from ..runtimes.info import Runner
from ..runtimes.torch import TorchRunner
from .geometry import pair, resize, scaled_size, slide_windows
from .modes import DEFAULT_TTA_SCALES, MODES

ImageInput = Union[np.ndarray, "Image.Image", str, Path]  # noqa: F821  (PIL imported lazily)


class Segmenter:
    """Predict class-id masks from images, in the spirit of smp / Ultralytics::

        seg = eseg.Segmenter.from_pretrained("runs/cityscapes")  # a run, a model folder, .onnx, .xml
        mask = seg("frame.png")                 # (H, W) class ids, the input's size
        masks = seg.predict_batch([img1, img2])
        probs = seg.predict_proba(img1)         # (C, H, W) float32 softmax

    ``model`` is a :class:`~eseg.models.base.SegmentationModel` (wrapped in a
    :class:`~eseg.runtimes.torch.TorchRunner` on ``device``, fp16 autocast on CUDA with ``amp``)
    or any runner. Masks are uint8 for at most 256 classes, else int32.
    """

    def __init__(self, model, *, mode: str = "whole", size: tuple[int, int] | str | None = None,
                 crop: int | tuple[int, int] | None = None, stride: int | tuple[int, int] | None = None,
                 scales: Sequence[float] | None = None, flip: bool | None = None, batch_size: int = 1,
                 device: str | torch.device | None = None, amp: bool = False) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown inference mode '{mode}'; choose one of {MODES}")
        self.runner = _as_runner(model, device, amp)
        self.info = self.runner.info
        self.mode = mode
        self.num_classes = self.info.num_classes
        self.fixed_size = self.info.fixed_size
        self.size = self._whole_size(size)
        self.crop, self.stride = self._windows(crop, stride) if mode == "slide" else (None, None)
        self.scales = tuple(float(s) for s in (scales or (DEFAULT_TTA_SCALES if mode == "tta" else (1.0,))))
        if min(self.scales) <= 0:
            raise ConfigError(f"scales must be positive numbers, got {scales}")
        self.flip = (mode == "tta") if flip is None else bool(flip)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.device = torch.device(getattr(self.runner, "device", None) or "cpu")
        self.class_names = self.info.class_names

    def _whole_size(self, size) -> tuple[int, int] | None:
        if size == "eval":
            size = self.info.eval_size
        if self.mode != "slide" and size is None and self.fixed_size:
            size = self.fixed_size  # a fixed-shape network can only see its own input size
        return pair(size, "size")

    def _windows(self, crop, stride) -> tuple[tuple[int, int], tuple[int, int]]:
        crop = pair(crop, "crop") or self.fixed_size or pair(self.info.train_crop, "crop")
        stride = pair(stride, "stride") or (max(1, round(crop[0] * 2 / 3)), max(1, round(crop[1] * 2 / 3)))
        return crop, stride

    @classmethod
    def from_pretrained(cls, path: str | Path, *, backend: str | None = None, device: str | torch.device | None = None,
                        **kwargs: Any) -> "Segmenter":
        """A run folder, a ``save_pretrained`` folder, an ``.onnx`` or an OpenVINO ``.xml``; the
        backend follows from the file unless named."""
        return cls(load_runner(path, backend, device=device), **kwargs)

    def __repr__(self) -> str:
        detail = f"mode={self.mode!r}, scales={self.scales}, flip={self.flip}"
        if self.crop:
            detail += f", crop={self.crop}, stride={self.stride}"
        if self.size:
            detail += f", size={self.size}"
        return f"Segmenter({type(self.runner).__name__}, num_classes={self.num_classes}, {detail})"

    # -- public API ------------------------------------------------------------------------

    def __call__(self, image: ImageInput) -> np.ndarray:
        return self.predict(image)

    def predict(self, image: ImageInput) -> np.ndarray:
        """(H, W) class ids for one image (numpy array, PIL image or path)."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[ImageInput]) -> list[np.ndarray]:
        """Class-id masks for several images of any sizes, run ``batch_size`` at a time."""
        # argmax on the device: only the masks, not the (C, H, W) logits, travel back to the CPU
        return [self.to_mask(logits) for logits in self.logits_from_tensors(self.normalized(images))]

    def predict_logits(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor | list[torch.Tensor]:
        """(C, H, W) float logits on CPU for one image, or a list of them for a list of images."""
        single = not isinstance(images, (list, tuple))
        logits = [x.cpu() for x in self.logits_from_tensors(self.normalized([images] if single else images))]
        return logits[0] if single else logits

    def predict_proba(self, image: ImageInput) -> np.ndarray:
        """(C, H, W) float32 class probabilities (softmax of the averaged logits)."""
        return torch.softmax(self.predict_logits(image), dim=0).numpy()

    def normalized(self, images: Sequence[ImageInput]) -> list[torch.Tensor]:
        return [normalize(as_rgb(img), self.info.mean, self.info.std) for img in images]

    def to_mask(self, logits: torch.Tensor) -> np.ndarray:
        dtype = np.uint8 if self.num_classes <= 256 else np.int32
        return logits.argmax(dim=0).cpu().numpy().astype(dtype)

    # -- the core: normalized tensors in, logits out ----------------------------------------

    @torch.inference_mode()
    def logits_from_tensors(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Normalized (3, H, W) tensors -> (C, H, W) logits on ``self.device``, averaged over
        every (scale, flip) pass and resized to each input's size."""
        for x in images:
            if x.ndim != 3 or x.shape[0] != 3 or min(x.shape[-2:]) < 1:
                raise DataError(f"expected normalized (3, H, W) image tensors with H, W >= 1, got shape {tuple(x.shape)}")
        sizes = [tuple(x.shape[-2:]) for x in images]
        passes = [(scale, flip) for scale in self.scales for flip in ((False, True) if self.flip else (False,))]
        images = [x.to(self.device, torch.float32) for x in images]  # once, not once per pass
        totals: list[torch.Tensor | None] = [None] * len(images)
        for scale, flip in passes:
            views = [resize(x, scaled_size(self.size or size, scale)) for x, size in zip(images, sizes)]
            outputs = self._infer_views([v.flip(-1) for v in views] if flip else views)
            for i, out in enumerate(outputs):
                out = resize(out.flip(-1) if flip else out, sizes[i])
                totals[i] = out if totals[i] is None else totals[i] + out
        return totals if len(passes) == 1 else [t / len(passes) for t in totals]  # type: ignore[return-value]

    def _infer_views(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.mode == "slide":
            return [self._slide(view) for view in views]
        outputs: list[torch.Tensor | None] = [None] * len(views)
        for index, out in self._run(views):
            outputs[index] = out
        return outputs  # type: ignore[return-value]

    def _slide(self, view: torch.Tensor) -> torch.Tensor:
        height, width = view.shape[-2:]
        windows = slide_windows(height, width, self.crop, self.stride)
        if len(windows) == 1:  # one window is the whole image: skip the accumulator
            return next(self._run([view]))[1]
        logits = torch.zeros(self.num_classes, height, width, device=self.device)
        count = torch.zeros(1, height, width, device=self.device)
        crops = [view[:, y1:y2, x1:x2] for y1, y2, x1, x2 in windows]
        for index, out in self._run(crops):
            y1, y2, x1, x2 = windows[index]
            logits[:, y1:y2, x1:x2] += out
            count[:, y1:y2, x1:x2] += 1
        return logits / count

    def _canvas(self, height: int, width: int) -> tuple[int, int]:
        if self.fixed_size is None:
            return padded_size(height, width, self.info.input_stride)
        if height > self.fixed_size[0] or width > self.fixed_size[1]:
            raise DataError(
                f"a {height}x{width} input does not fit the model's fixed input size {self.fixed_size}; "
                f"use mode='whole' with size={self.fixed_size} or mode='slide' with crop={self.fixed_size}"
            )
        return self.fixed_size

    def _run(self, tensors: list[torch.Tensor]) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (index, (C, h, w) logits): tensors sharing a padded canvas run together,
        ``batch_size`` at a time, each padded with the one padding rule and cropped back."""
        groups: dict[tuple[int, int], list[int]] = {}
        for index, x in enumerate(tensors):
            groups.setdefault(self._canvas(*x.shape[-2:]), []).append(index)
        for canvas, indices in groups.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                logits = self._forward(torch.stack([pad_to_size(tensors[i], canvas) for i in chunk]), canvas)
                for j, i in enumerate(chunk):
                    height, width = tensors[i].shape[-2:]
                    yield i, logits[j, :, :height, :width]

    def _forward(self, batch: torch.Tensor, canvas: tuple[int, int]) -> torch.Tensor:
        logits = self.runner(batch)
        if logits.shape[1] != self.num_classes or tuple(logits.shape[-2:]) != canvas:
            raise CheckpointError(
                f"the model returned logits of shape {tuple(logits.shape)} for an input of shape {tuple(batch.shape)}; "
                f"expected ({batch.shape[0]}, {self.num_classes}, {canvas[0]}, {canvas[1]})")
        return logits.to(self.device, torch.float32)


def _as_runner(model, device, amp: bool) -> Runner:
    """A runner for ``model``; a caller's runner is used as it is, or through an amp copy of it."""
    if isinstance(model, torch.nn.Module):
        return TorchRunner(model, device=device, amp=amp)
    if amp and not isinstance(model, TorchRunner):
        raise ConfigError(f"amp applies to the torch backend only, not to {type(model).__name__}")
    return model.with_amp(True) if amp and not model.amp else model

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

Masks
-----
In ``whole`` mode without extra scales or flip (one network pass), masks come from the network's
low-resolution logits through the one rule, :func:`~eseg.inference.lowres.lowres_argmax`: the
exact argmax of their bilinear upsample, for every backend (a graph exported with the ``lowres``
output contract, and PyTorch through the model's ``forward_lowres``). Without a resize it equals
the argmax of the model's full-resolution logits; where the image is resized to ``size`` (a
fixed-size graph), the mask is the argmax of one bilinear resize of the low-resolution logits
straight to the image's size (:func:`~eseg.inference.geometry.mask_upsample`). A graph with full
resolution output (``--full-resolution``, or exported before the contract was recorded) gives
its masks as the argmax of its logits, as before. Logits (``predict_logits``, ``predict_proba``),
TTA and sliding windows use full-resolution logits as they always did; a ``lowres`` graph's are
first resized with the model's own geometry (:func:`~eseg.inference.geometry.full_resolution_logits`).

:meth:`Segmenter.masks_from_tensors` is the mask path in one call; :meth:`Segmenter.mask_batches`,
:meth:`Segmenter.run_network` and :meth:`Segmenter.batch_masks` are its three steps (prepare the
network inputs, call the network, read the masks), for a pipeline that overlaps them.
:meth:`Segmenter.stream` yields the masks of many inputs in order.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from ..data.io import as_rgb
from ..data.transforms import normalize
from ..errors import CheckpointError, ConfigError, DataError
from ..models.padding import pad_to_size, padded_size
from ..runtimes import load_runner
from ..runtimes.info import OUTPUT_LOWRES, Runner
from ..runtimes.torch import TorchRunner
from .geometry import View, full_resolution_logits, mask_upsample, pair, resize, scaled_size, slide_windows
from .lowres import lowres_argmax, mask_dtype
from .modes import DEFAULT_TTA_SCALES, MODES

ImageInput = Union[np.ndarray, "Image.Image", str, Path]  # noqa: F821  (PIL imported lazily)


@dataclass
class NetworkBatch:
    """One network call of the mask path: ``inputs`` (N, 3, H, W), normalized, resized and padded
    for the network, on the Segmenter's device; for each of its images, its position in the
    caller's list (``indices``) and where it lies in the input (``views``)."""

    inputs: torch.Tensor
    indices: list[int]
    views: list[View]


class Segmenter:
    """Predict class-id masks from images, in the spirit of smp / Ultralytics::

        seg = eseg.Segmenter.from_pretrained("runs/cityscapes")  # a run, a model folder, .onnx, .xml
        mask = seg("frame.png")                 # (H, W) class ids, the input's size
        masks = seg.predict_batch([img1, img2])
        for mask in seg.stream(paths):          # one mask per input, in order, batch_size at a time
            ...
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
        self.mask_runner = _mask_runner(self.runner)  # the mask path's: low-resolution logits where it can
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
        return self.masks_from_tensors(self.normalized(images))

    def stream(self, images: Iterable[ImageInput]) -> Iterator[np.ndarray]:
        """The mask of each of ``images`` (paths, arrays, PIL images; any iterable, read lazily, a
        few batches ahead), yielded in order (Ultralytics' ``stream=True``); decoding runs on
        threads ahead of the network (:func:`eseg.inference.pipeline.stream_masks`)."""
        from .pipeline import stream_masks

        yield from stream_masks(self, images)

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
        """The mask of (C, H, W) full-resolution logits: their first-index argmax (numpy's on the
        CPU, several times faster than torch's there; on the device elsewhere, so only the mask
        travels)."""
        dtype = mask_dtype(self.num_classes)
        if logits.device.type == "cpu":
            return logits.float().numpy().argmax(axis=0).astype(dtype)
        return logits.argmax(dim=0).cpu().numpy().astype(dtype)

    # -- the mask path: normalized tensors in, masks out ----------------------------------------

    @property
    def single_pass(self) -> bool:
        """Whether masks take one network pass per image (``whole`` mode, no extra scales or
        flip): then they come from the low-resolution logits (:meth:`masks_from_tensors`)."""
        return self.mode == "whole" and self.scales == (1.0,) and not self.flip

    @torch.inference_mode()
    def masks_from_tensors(self, images: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """Normalized (3, H, W) tensors -> (H, W) class-id masks, in order. In a single pass:
        :meth:`mask_batches`, :meth:`run_network`, :meth:`batch_masks`; else the argmax of
        :meth:`logits_from_tensors`."""
        if not self.single_pass:
            return [self.to_mask(logits) for logits in self.logits_from_tensors(images)]
        masks: list[np.ndarray | None] = [None] * len(images)
        for batch in self.mask_batches(images):
            for index, mask in zip(batch.indices, self.batch_masks(batch, self.run_network(batch))):
                masks[index] = mask
        return masks  # type: ignore[return-value]

    def mask_batches(self, images: Sequence[torch.Tensor]) -> list[NetworkBatch]:
        """The network calls that make the masks of normalized (3, H, W) tensors in a single
        pass: each image resized to ``size`` (if set), grouped with those sharing its canvas,
        ``batch_size`` at a time, and padded to the canvas (the one padding rule)."""
        if not self.single_pass:
            raise ConfigError(f"mask_batches is the single-pass mask path; this Segmenter runs {self!r}: use "
                              "masks_from_tensors")
        _check_images(images)
        views = [resize(x.to(self.device, torch.float32), self.size or tuple(x.shape[-2:])) for x in images]
        batches = []
        for canvas, chunk in self._chunks(views):
            inputs = torch.stack([pad_to_size(views[i], canvas) for i in chunk])
            placed = [View.of(images[i].shape[-2:], views[i].shape[-2:], canvas, self.info.input_stride)
                      for i in chunk]
            batches.append(NetworkBatch(inputs, chunk, placed))
        return batches

    def run_network(self, batch: NetworkBatch) -> torch.Tensor:
        """The network on one batch: the mask runner's raw output (low-resolution logits, or a
        full-resolution graph's logits), its shape checked."""
        logits = self.mask_runner(batch.inputs)
        self._check_logits(logits, batch.inputs, self.mask_runner.info)
        return logits

    def batch_masks(self, batch: NetworkBatch, logits: torch.Tensor) -> list[np.ndarray]:
        """The masks of one batch from its network output (:meth:`run_network`)."""
        info = self.mask_runner.info
        masks = []
        for j, view in enumerate(batch.views):
            upsample = mask_upsample(view, tuple(logits.shape[-2:]), info.align_corners) if info.lowres else None
            if upsample is not None:
                masks.append(lowres_argmax(logits[j], upsample))
                continue
            full = logits[j : j + 1].float()
            if info.lowres:  # a resized view the one-resize rule cannot map (align_corners): resize logits
                full = full_resolution_logits(full, view.canvas, info.input_stride, align_corners=info.align_corners)
            masks.append(self.to_mask(resize(full[0, :, : view.view[0], : view.view[1]], view.size)))
        return masks

    # -- the core: normalized tensors in, logits out ----------------------------------------

    @torch.inference_mode()
    def logits_from_tensors(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Normalized (3, H, W) tensors -> (C, H, W) logits on ``self.device``, averaged over
        every (scale, flip) pass and resized to each input's size."""
        _check_images(images)
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

    def _chunks(self, tensors: Sequence[torch.Tensor]) -> Iterator[tuple[tuple[int, int], list[int]]]:
        """(canvas, indices): the tensors sharing a padded canvas, ``batch_size`` at a time."""
        groups: dict[tuple[int, int], list[int]] = {}
        for index, x in enumerate(tensors):
            groups.setdefault(self._canvas(*x.shape[-2:]), []).append(index)
        for canvas, indices in groups.items():
            for start in range(0, len(indices), self.batch_size):
                yield canvas, indices[start : start + self.batch_size]

    def _run(self, tensors: list[torch.Tensor]) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (index, (C, h, w) logits): tensors sharing a padded canvas run together,
        ``batch_size`` at a time, each padded with the one padding rule and cropped back."""
        for canvas, chunk in self._chunks(tensors):
            logits = self._forward(torch.stack([pad_to_size(tensors[i], canvas) for i in chunk]), canvas)
            for j, i in enumerate(chunk):
                height, width = tensors[i].shape[-2:]
                yield i, logits[j, :, :height, :width]

    def _forward(self, batch: torch.Tensor, canvas: tuple[int, int]) -> torch.Tensor:
        """Full-resolution logits of ``batch``; a ``lowres`` runner's are resized as the model's
        forward resizes them."""
        logits = self.runner(batch)
        info = self.runner.info
        self._check_logits(logits, batch, info)
        if info.lowres:
            logits = full_resolution_logits(logits.float(), canvas, info.input_stride, align_corners=info.align_corners)
        return logits.to(self.device, torch.float32)

    def _check_logits(self, logits: torch.Tensor, batch: torch.Tensor, info) -> None:
        """CheckpointError unless ``logits`` are what ``info``'s contract promises for ``batch``."""
        canvas = tuple(batch.shape[-2:])
        if info.lowres:
            expected = tuple(s // info.output_stride for s in padded_size(*canvas, info.input_stride)) \
                if info.output_stride else tuple(logits.shape[-2:])
            what = "low-resolution logits"
        else:
            expected, what = canvas, "logits"
        if logits.ndim != 4 or tuple(logits.shape[:2]) != (batch.shape[0], self.num_classes) \
                or tuple(logits.shape[-2:]) != expected or min(logits.shape[-2:]) < 1:
            raise CheckpointError(
                f"the model returned {what} of shape {tuple(logits.shape)} for an input of shape {tuple(batch.shape)}; "
                f"expected ({batch.shape[0]}, {self.num_classes}, {expected[0]}, {expected[1]}) (output contract "
                f"'{info.output}'; re-export the graph if its metadata does not match it)")


def _check_images(images: Sequence[torch.Tensor]) -> None:
    for x in images:
        if x.ndim != 3 or x.shape[0] != 3 or min(x.shape[-2:]) < 1:
            raise DataError(f"expected normalized (3, H, W) image tensors with H, W >= 1, got shape {tuple(x.shape)}")


def _as_runner(model, device, amp: bool) -> Runner:
    """A runner for ``model``; a caller's runner is used as it is, or through an amp copy of it."""
    if isinstance(model, torch.nn.Module):
        return TorchRunner(model, device=device, amp=amp)
    if amp and not isinstance(model, TorchRunner):
        raise ConfigError(f"amp applies to the torch backend only, not to {type(model).__name__}")
    return model.with_amp(True) if amp and not model.amp else model


def _mask_runner(runner: Runner) -> Runner:
    """The runner of the mask path: a model's runner returning its low-resolution logits
    (the same model and options), any other runner as it is (its contract says what it returns)."""
    if isinstance(runner, TorchRunner) and runner.info is not None and hasattr(runner.model, "forward_lowres"):
        return runner.with_output(OUTPUT_LOWRES)
    return runner

"""Inference: whole image, sliding window and multi-scale + flip TTA, behind one ``Segmenter``.

Pre- and post-processing live here and nowhere else; the network itself is hidden behind a
*runner*, so the same code drives a PyTorch model, an ONNX Runtime session or anything else.

The runner protocol
-------------------
A runner is any object with

- ``__call__(batch) -> logits``: ``batch`` is a float32 (N, 3, H, W) tensor, already normalized
  with the runner's ``mean``/``std`` and already padded (bottom/right, zeros) by
  :func:`eseg.models.padding.pad_to_size`, so H and W are multiples of ``pad_multiple`` (or equal
  ``fixed_size``). It returns (N, num_classes, H, W) float logits, on any device.
- ``num_classes: int``, ``pad_multiple: int``, ``mean``, ``std`` (3-tuples on the 0..1 scale).
- optional: ``fixed_size`` ((H, W) when the network only accepts one input size, else None),
  ``device`` (where inputs and accumulators live; default CPU), ``class_names``, ``eval_size``,
  ``train_crop`` and ``extra`` (the model config's metadata dict).

:class:`TorchRunner` wraps an :class:`eseg.ESeg`. Other backends register a lazy import string in
:data:`BACKENDS`; :func:`load_runner` resolves it and calls the target as
``target(path, device=device)``.

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

import argparse
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F

from . import fileio
from .errors import CheckpointError, ConfigError, DataError
from .models.padding import pad_to_size, padded_size

DEFAULT_TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
MODES = ("whole", "slide", "tta")

# backend name -> "module:callable"; the callable is invoked as target(path, device=device).
BACKENDS: dict[str, str] = {
    "torch": "eseg.inference:TorchRunner.from_pretrained",
    "onnxruntime": "eseg.export:OnnxRunner",
}

ImageInput = Union[np.ndarray, "Image.Image", str, Path]  # noqa: F821  (PIL imported lazily)


# ----------------------------------------------------------------------------------------------
# Runners
# ----------------------------------------------------------------------------------------------


class TorchRunner:
    """Runs an :class:`eseg.ESeg` (or a DDP wrapper of one) in eval mode without gradients."""

    def __init__(self, model: torch.nn.Module, *, device: str | torch.device | None = None, amp: bool = False) -> None:
        model = getattr(model, "module", model)  # unwrap DistributedDataParallel
        if device is not None:
            model.to(device)
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.amp = amp
        config = model.config
        self.num_classes = config.num_classes
        self.pad_multiple = model.pad_multiple
        self.mean, self.std = tuple(config.mean), tuple(config.std)
        self.fixed_size = None
        self.class_names = config.class_names
        self.eval_size = tuple(config.eval_size)
        self.train_crop = tuple(config.train_crop)
        self.extra = dict(config.extra)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | torch.device | None = None, amp: bool = False) -> "TorchRunner":
        from .models import load_model

        return cls(load_model(resolve_model_dir(path)), device=device or "cpu", amp=amp)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        if self.amp and self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                return self.model(batch).float()
        return self.model(batch)


def load_runner(path: str | Path, backend: str = "torch", *, device: str | torch.device | None = None):
    """Build a runner for ``path`` with a backend from :data:`BACKENDS` (imported lazily)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown inference backend '{backend}'; available: {sorted(BACKENDS)}")
    module_name, _, attr = BACKENDS[backend].partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"backend '{backend}' needs module '{module_name}', which failed to import ({exc})") from exc
    for part in attr.split("."):
        target = getattr(target, part)
    return target(path, device=device)


# ----------------------------------------------------------------------------------------------
# Pre-processing
# ----------------------------------------------------------------------------------------------


def to_rgb_uint8(image: ImageInput) -> np.ndarray:
    """Any supported input as a uint8 RGB (H, W, 3) array, through :mod:`eseg.data.io` (EXIF,
    grayscale, RGBA, 16-bit, float and palette handled; ``DataError`` on corrupt files)."""
    from PIL import Image

    from .data.io import array_to_rgb, image_to_rgb, read_image

    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return image_to_rgb(image)
    return array_to_rgb(image, source="image array")


def normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) with ``(x / 255 - mean) / std``."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - mean_t) / std_t


# ----------------------------------------------------------------------------------------------
# Geometry helpers
# ----------------------------------------------------------------------------------------------


def _pair(value, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value, value
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ConfigError(f"{name} must be a positive int or (H, W), got {value}")
    return value


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (C, H, W) tensor (align_corners=False, like mmsegmentation)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]


def slide_windows(height: int, width: int, crop: tuple[int, int], stride: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """(y1, y2, x1, x2) windows covering the image; windows never leave it (the last one is
    shifted back to end at the border) and shrink to the image where it is smaller than ``crop``."""
    crop_h, crop_w = crop
    stride_h, stride_w = stride
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    windows = []
    for r in range(rows):
        y1 = max(min(r * stride_h, height - crop_h), 0)
        for c in range(cols):
            x1 = max(min(c * stride_w, width - crop_w), 0)
            windows.append((y1, min(y1 + crop_h, height), x1, min(x1 + crop_w, width)))
    return windows


# ----------------------------------------------------------------------------------------------
# Segmenter
# ----------------------------------------------------------------------------------------------


class Segmenter:
    """Predict class-id masks from images, in the spirit of smp / Ultralytics::

        seg = eseg.Segmenter.from_pretrained("runs/cityscapes")  # or any save_pretrained folder
        mask = seg("frame.png")                 # (H, W) class ids, the input's size
        masks = seg.predict_batch([img1, img2])
        probs = seg.predict_proba(img1)         # (C, H, W) float32 softmax

    ``model`` is an :class:`eseg.ESeg` (wrapped in a :class:`TorchRunner` on ``device``, with fp16
    autocast on CUDA when ``amp``) or any runner (see the module docstring), which keeps its own
    device. Masks are uint8 when there are at most 256 classes, else int32.
    """

    def __init__(
        self,
        model,
        *,
        mode: str = "whole",
        size: tuple[int, int] | str | None = None,
        crop: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        scales: Sequence[float] | None = None,
        flip: bool | None = None,
        batch_size: int = 1,
        device: str | torch.device | None = None,
        amp: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown inference mode '{mode}'; choose one of {MODES}")
        if isinstance(model, torch.nn.Module):
            model = TorchRunner(model, device=device, amp=amp)
        elif amp:
            if not isinstance(model, TorchRunner):
                raise ConfigError(f"amp applies to the torch backend only, not to {type(model).__name__}")
            model.amp = True
        self.runner = model
        self.mode = mode
        self.num_classes = int(model.num_classes)
        fixed = getattr(model, "fixed_size", None)
        self.fixed_size = tuple(fixed) if fixed else None
        if size == "eval":
            size = getattr(model, "eval_size", None)
            if size is None:
                raise ConfigError("size='eval' needs a model that records its eval_size")
        # A fixed-shape network can only see its own input size.
        if mode != "slide" and size is None and self.fixed_size:
            size = self.fixed_size
        self.size = _pair(size, "size")
        if mode == "slide":
            crop = _pair(crop, "crop") or self.fixed_size or _pair(getattr(model, "train_crop", None), "crop")
            if crop is None:
                raise ConfigError("mode='slide' needs crop=(H, W)")
            self.crop = crop
            self.stride = _pair(stride, "stride") or (max(1, round(crop[0] * 2 / 3)), max(1, round(crop[1] * 2 / 3)))
        else:
            self.crop = self.stride = None
        if scales is None:
            scales = DEFAULT_TTA_SCALES if mode == "tta" else (1.0,)
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or min(self.scales) <= 0:
            raise ConfigError(f"scales must be positive numbers, got {scales}")
        self.flip = (mode == "tta") if flip is None else bool(flip)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.device = torch.device(getattr(model, "device", None) or "cpu")
        self.class_names = list(getattr(model, "class_names", None) or [str(i) for i in range(self.num_classes)])

    @classmethod
    def from_pretrained(cls, path: str | Path, *, backend: str = "torch", device: str | torch.device | None = None, **kwargs) -> "Segmenter":
        """Load a folder written by ``save_pretrained`` (or its config.json / model.safetensors),
        or a file of another backend, e.g. ``backend="onnxruntime"`` for an ``.onnx`` file."""
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
        return [self._to_mask(logits) for logits in self.logits_from_tensors(self._normalized(images))]

    def predict_logits(self, images: ImageInput | Sequence[ImageInput]) -> torch.Tensor | list[torch.Tensor]:
        """(C, H, W) float logits on CPU for one image, or a list of them for a list of images."""
        single = not isinstance(images, (list, tuple))
        logits = [x.cpu() for x in self.logits_from_tensors(self._normalized([images] if single else images))]
        return logits[0] if single else logits

    def _normalized(self, images: Sequence[ImageInput]) -> list[torch.Tensor]:
        return [normalize(to_rgb_uint8(img), self.runner.mean, self.runner.std) for img in images]

    def predict_proba(self, image: ImageInput) -> np.ndarray:
        """(C, H, W) float32 class probabilities (softmax of the averaged logits)."""
        return torch.softmax(self.predict_logits(image), dim=0).numpy()

    def _to_mask(self, logits: torch.Tensor) -> np.ndarray:
        dtype = np.uint8 if self.num_classes <= 256 else np.int32
        return logits.argmax(dim=0).cpu().numpy().astype(dtype)

    # -- the core: normalized tensors in, logits out ----------------------------------------

    @torch.inference_mode()
    def logits_from_tensors(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Normalized (3, H, W) tensors -> (C, H, W) logits on ``self.device``, averaged over
        every (scale, flip) pass and resized to each input's size."""
        sizes = [tuple(x.shape[-2:]) for x in images]
        for x in images:
            if x.ndim != 3 or x.shape[0] != 3:
                raise DataError(f"expected normalized (3, H, W) image tensors, got shape {tuple(x.shape)}")
        passes = [(scale, flip) for scale in self.scales for flip in ((False, True) if self.flip else (False,))]
        images = [x.to(self.device, torch.float32) for x in images]  # once, not once per pass
        totals: list[torch.Tensor | None] = [None] * len(images)
        for scale, flip in passes:
            views = []
            for x, size in zip(images, sizes):
                view = _resize(x, self._pass_size(size, scale))
                views.append(view.flip(-1) if flip else view)
            for i, out in enumerate(self._infer_views(views)):
                out = out.flip(-1) if flip else out
                out = _resize(out, sizes[i])
                totals[i] = out if totals[i] is None else totals[i] + out
        if len(passes) == 1:
            return totals  # type: ignore[return-value]
        return [t / len(passes) for t in totals]  # type: ignore[operator]

    def _pass_size(self, size: tuple[int, int], scale: float) -> tuple[int, int]:
        base = self.size or size
        if scale == 1.0:
            return base
        return max(1, int(base[0] * scale + 0.5)), max(1, int(base[1] * scale + 0.5))

    def _infer_views(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.mode != "slide":
            outputs: list[torch.Tensor | None] = [None] * len(views)
            for index, out in self._run(views):
                outputs[index] = out
            return outputs  # type: ignore[return-value]
        return [self._slide(view) for view in views]

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
            return padded_size(height, width, self.runner.pad_multiple)
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
                batch = torch.stack([pad_to_size(tensors[i], canvas) for i in chunk])
                logits = self.runner(batch)
                if logits.shape[1] != self.num_classes or tuple(logits.shape[-2:]) != canvas:
                    raise CheckpointError(
                        f"the model returned logits of shape {tuple(logits.shape)} for an input of shape "
                        f"{tuple(batch.shape)}; expected ({len(chunk)}, {self.num_classes}, {canvas[0]}, {canvas[1]})"
                    )
                logits = logits.to(self.device, torch.float32)
                for j, i in enumerate(chunk):
                    height, width = tensors[i].shape[-2:]
                    yield i, logits[j, :, :height, :width]


# ----------------------------------------------------------------------------------------------
# Model resolution and palettes
# ----------------------------------------------------------------------------------------------


def resolve_model_dir(path: str | Path) -> Path:
    """A ``save_pretrained`` folder (or a file in it), or a training run folder, whose
    ``checkpoints/best`` is used (its ``.old`` copy after an interrupted save)."""
    from .engine.checkpoint import find_checkpoint

    path = Path(path)
    if path.is_file() or (path / "config.json").is_file():
        return path
    best = find_checkpoint(path / "checkpoints" / "best") if path.is_dir() else None
    if best is not None:
        return best
    raise CheckpointError(
        f"'{path}' is not a model: expected a folder with config.json and model.safetensors "
        "(written by save_pretrained or training), or a training run folder holding checkpoints/best"
    )


def resolve_palette(palette: str | Path | None, num_classes: int, class_names: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    """(colors, names) for ``num_classes`` classes. ``palette`` is one of

    - None: the built-in table whose class names match the model's, else distinct colors;
    - a built-in name: ``cityscapes``, ``ade20k``, ``synthetic``;
    - a folder dataset's classes file (``names`` + ``colors``), or its root folder;
    - a dataset spec YAML (``{type: cityscapes}``, ``{type: folder, root: DIR}``).
    """
    from .palette import PALETTE_NAMES, get_class_names, get_palette

    names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
    if palette is None:
        for known in PALETTE_NAMES:
            if list(get_class_names(known)) == names:
                return get_palette(known, num_classes), names
        return get_palette(None, num_classes), names
    if str(palette).lower() in PALETTE_NAMES:
        return _builtin_palette(str(palette).lower(), num_classes)
    info = _classes_info(Path(palette))
    if isinstance(info, str):
        return _builtin_palette(info, num_classes)
    if len(info["names"]) != num_classes:
        raise ConfigError(f"--palette '{palette}' lists {len(info['names'])} classes but the model predicts {num_classes}")
    return get_palette(info["colors"], num_classes), list(info["names"])


def _builtin_palette(name: str, num_classes: int) -> tuple[np.ndarray, list[str]]:
    from .palette import get_class_names, get_palette

    known_names = list(get_class_names(name))
    if len(known_names) != num_classes:
        raise ConfigError(f"palette '{name}' has {len(known_names)} classes but the model predicts {num_classes}")
    return get_palette(name, num_classes), known_names


def _classes_info(path: Path) -> dict | str:
    """A classes file's {'names', 'colors'}, or the built-in palette name a dataset spec implies."""
    from .data import load_dataset_spec
    from .data.folder import find_classes_file, load_classes_file
    from .palette import PALETTE_NAMES

    if path.is_dir():
        return load_classes_file(find_classes_file(path))
    if not path.is_file():
        raise ConfigError(f"--palette '{path}' is neither a built-in palette {list(PALETTE_NAMES)} nor an existing file or folder")
    spec = load_dataset_spec(path) if path.suffix in (".yaml", ".yml") else {}
    if "type" not in spec:
        return load_classes_file(path)
    if spec["type"] in PALETTE_NAMES:
        return spec["type"]
    if spec.get("classes"):
        return load_classes_file(spec["classes"])
    if spec.get("root"):
        return load_classes_file(find_classes_file(Path(spec["root"])))
    raise ConfigError(f"--palette '{path}': dataset type {spec['type']!r} names no classes file or root")


# ----------------------------------------------------------------------------------------------
# eseg predict
# ----------------------------------------------------------------------------------------------

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
MASK_DIR, COLOR_DIR, OVERLAY_DIR, PROB_DIR = "masks", "color", "overlay", "probs"
LEGEND_FILE = "legend.png"


def collect_sources(source: str | Path) -> list[tuple[Path, Path]]:
    """(file, output stem relative to --out) for one file, a folder (recursive) or a glob."""
    import glob

    from .data.io import IMAGE_EXTENSIONS

    extensions = tuple(IMAGE_EXTENSIONS) + VIDEO_EXTENSIONS
    path = Path(source)
    if path.is_file():
        return [(path, Path(path.stem))]
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in extensions)
        root = path
    elif glob.has_magic(str(source)):
        files = sorted(Path(f) for f in glob.glob(str(source), recursive=True)
                       if Path(f).is_file() and Path(f).suffix.lower() in extensions)
        root = Path(os.path.commonpath([str(f.parent) for f in files])) if files else None
    else:
        raise DataError(f"--source '{source}' is not a file, a folder or a glob pattern that matches anything")
    if not files:
        raise DataError(f"no images or videos ({', '.join(extensions)}) found in '{source}'")
    return [(f, f.relative_to(root).with_suffix("")) for f in files]


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def output_paths(out_dir: Path, stem: Path, *, video: bool, save_probs: bool) -> dict[str, Path]:
    if video:
        return {"color": out_dir / COLOR_DIR / f"{stem}.mp4", "overlay": out_dir / OVERLAY_DIR / f"{stem}.mp4"}
    paths = {
        "mask": out_dir / MASK_DIR / f"{stem}.png",
        "color": out_dir / COLOR_DIR / f"{stem}.png",
        "overlay": out_dir / OVERLAY_DIR / f"{stem}.png",
    }
    if save_probs:
        paths["probs"] = out_dir / PROB_DIR / f"{stem}.npy"
    return paths


def save_npy(path: Path, array: np.ndarray) -> None:
    with fileio.atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise ConfigError(f"video files need imageio-ffmpeg: pip install 'eseg[video]' ({exc})") from exc
    return imageio_ffmpeg


def read_video(path: Path) -> tuple[float, Iterator[np.ndarray]]:
    """(fps, uint8 RGB frames) decoded by the ffmpeg binary that imageio-ffmpeg ships."""
    reader = _ffmpeg().read_frames(str(path), pix_fmt="rgb24")
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as exc:
        raise DataError(f"{path}: cannot open video ({str(exc).strip().splitlines()[-1] if str(exc).strip() else exc})") from exc
    width, height = meta["size"]

    def frames() -> Iterator[np.ndarray]:
        try:
            for buffer in reader:
                yield np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 3)
        finally:
            reader.close()

    return float(meta.get("fps") or 25.0), frames()


class VideoWriter:
    """H.264 MP4 through imageio-ffmpeg, written to a temporary file that is renamed into place
    by :func:`eseg.fileio.atomic_path` only when every frame was written.

    yuv420p needs even sizes: odd frames get their last row/column repeated once.
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self._atomic = fileio.atomic_path(path)
        self._tmp = self._atomic.__enter__()
        self._writer = None

    def append(self, frame: np.ndarray) -> None:
        pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
        if pad_h or pad_w:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        if self._writer is None:
            self._writer = _ffmpeg().write_frames(
                str(self._tmp), (frame.shape[1], frame.shape[0]), fps=self.fps, codec="libx264", quality=8,
                macro_block_size=1, output_params=["-f", "mp4"],  # the temporary name has no .mp4 suffix
            )
            self._writer.send(None)
        self._writer.send(np.ascontiguousarray(frame))

    def close(self, ok: bool = True) -> None:
        if self._writer is not None:
            self._writer.close()
        if ok and self._writer is not None:
            self._atomic.__exit__(None, None, None)
        else:
            self._atomic.__exit__(DataError, DataError(f"{self.path}: not written"), None)


class Predictor:
    """Runs ``eseg predict``: one Segmenter, one palette, one output folder."""

    def __init__(self, segmenter: Segmenter, out_dir: Path, *, palette: np.ndarray,
                 alpha: float = 0.5, save_probs: bool = False) -> None:
        self.segmenter = segmenter
        self.out_dir = out_dir
        self.palette = palette
        self.alpha = alpha
        self.save_probs = save_probs
        self.failures: list[tuple[Path, str]] = []
        self.successes = 0

    def _fail(self, path: Path, exc: BaseException, bar) -> None:
        message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        self.failures.append((path, message))
        (bar.write if bar is not None else print)(f"warning: skipped {message}", file=sys.stderr)

    def write_image_outputs(self, image: np.ndarray, logits: torch.Tensor, paths: dict[str, Path]) -> None:
        from .viz import colorize, overlay

        mask = self.segmenter._to_mask(logits)
        fileio.write_png(paths["mask"], mask if mask.dtype == np.uint8 else mask.astype(np.uint16))
        fileio.write_png(paths["color"], colorize(mask, self.palette))
        fileio.write_png(paths["overlay"], overlay(image, mask, self.palette, alpha=self.alpha))
        if "probs" in paths:
            save_npy(paths["probs"], torch.softmax(logits.float(), dim=0).cpu().numpy().astype(np.float32))

    def run_images(self, items: list[tuple[Path, Path]], bar) -> None:
        batch_size = self.segmenter.batch_size
        for start in range(0, len(items), batch_size):
            loaded = []
            for path, stem in items[start : start + batch_size]:
                try:
                    loaded.append((path, stem, to_rgb_uint8(path)))
                except (DataError, OSError) as exc:
                    self._fail(path, exc, bar)
                    if bar is not None:
                        bar.update(1)
            if loaded:
                tensors = [normalize(image, self.segmenter.runner.mean, self.segmenter.runner.std) for _, _, image in loaded]
                logits = self.segmenter.logits_from_tensors(tensors)
                for (path, stem, image), out in zip(loaded, logits):
                    try:
                        self.write_image_outputs(image, out, output_paths(self.out_dir, stem, video=False, save_probs=self.save_probs))
                        self.successes += 1
                    except OSError as exc:
                        self._fail(path, exc, bar)
                    if bar is not None:
                        bar.update(1)

    def run_video(self, path: Path, stem: Path, bar) -> None:
        from .viz import colorize, overlay

        paths = output_paths(self.out_dir, stem, video=True, save_probs=False)
        writers: list[VideoWriter] = []
        ok = False
        try:
            fps, frames = read_video(path)
            writers = [VideoWriter(paths["color"], fps), VideoWriter(paths["overlay"], fps)]
            count = 0
            for batch in _chunks(frames, self.segmenter.batch_size):
                for frame, mask in zip(batch, self.segmenter.predict_batch(batch)):
                    writers[0].append(colorize(mask, self.palette))
                    writers[1].append(overlay(frame, mask, self.palette, alpha=self.alpha))
                count += len(batch)
            if count == 0:
                raise DataError(f"{path}: the video has no frames")
            ok = True
            self.successes += 1
        except (DataError, OSError, RuntimeError) as exc:  # a broken stream: report it, keep going
            self._fail(path, exc if isinstance(exc, DataError) else DataError(f"{path}: cannot read video ({exc})"), bar)
        finally:
            for writer in writers:
                writer.close(ok)
            if bar is not None:
                bar.update(1)


def _chunks(items, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .engine.evaluate import add_inference_arguments

    parser.add_argument("model", help="model folder (save_pretrained / checkpoint), training run folder, or a backend file")
    parser.add_argument("--source", required=True, help="an image, a folder (searched recursively), a glob, or a video file")
    parser.add_argument("--out", default="runs/predict", help="output folder (default: runs/predict)")
    parser.add_argument("--backend", default="torch", help=f"inference backend: {', '.join(sorted(BACKENDS))}")
    parser.add_argument("--palette", help="built-in palette name (cityscapes, ade20k) or a classes YAML with names/colors")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the color mask")
    parser.add_argument("--save-logits", action="store_true", help="also save (C, H, W) float32 probabilities as .npy")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--no-progress", action="store_true")
    add_inference_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from .engine.distributed import resolve_device
    from .engine.evaluate import segmenter_options
    from .viz import legend

    sources = collect_sources(args.source)
    out_dir = Path(args.out)
    planned = []
    for path, stem in sources:
        planned += output_paths(out_dir, stem, video=is_video(path), save_probs=args.save_logits).values()
    existing = [p for p in planned if p.exists()]
    if existing and not args.overwrite:
        raise ConfigError(
            f"{len(existing)} output file(s) already exist, e.g. '{existing[0]}'; "
            "pass --overwrite to replace them or choose another --out"
        )
    runner = load_runner(args.model, args.backend, device=resolve_device(args.device))
    segmenter = Segmenter(runner, amp=args.amp, **segmenter_options(args))
    palette, class_names = resolve_palette(args.palette, segmenter.num_classes, getattr(runner, "class_names", None))
    predictor = Predictor(segmenter, out_dir, palette=palette, alpha=args.alpha,
                          save_probs=args.save_logits)
    if args.overwrite or not (out_dir / LEGEND_FILE).exists():  # the same model gives the same legend
        fileio.write_png(out_dir / LEGEND_FILE, legend(class_names, palette))
    images = [(p, s) for p, s in sources if not is_video(p)]
    videos = [(p, s) for p, s in sources if is_video(p)]
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(sources), desc="predict", unit="img", dynamic_ncols=True, file=sys.stderr)
    try:
        predictor.run_images(images, bar)
        for path, stem in videos:
            predictor.run_video(path, stem, bar)
    finally:
        if bar is not None:
            bar.close()
    total = len(sources)
    print(f"predicted {predictor.successes} of {total} input(s) with {segmenter}; outputs in {out_dir}")
    if predictor.failures:
        print(f"{len(predictor.failures)} input(s) failed:", file=sys.stderr)
        for _, message in predictor.failures:
            print(f"  {message}", file=sys.stderr)
        return 1
    return 0

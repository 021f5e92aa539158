"""``eseg predict`` as a library: sources in, masks, colour masks, overlays and a legend out.

Decoding, the network and writing overlap (:mod:`eseg.inference.pipeline`); outputs keep their
names whatever order they finish in. ``save`` chooses the outputs (:data:`SAVE_CHOICES`): class-id
masks (PNG, mode L; 16-bit past 256 classes), colour masks (palette PNGs: the ids and the
palette), overlays (JPEG: a blend over a photo; lossless PNG costs 140x the time, see
docs/benchmark.md) and probabilities (``.npy``). Masks alone never colour anything.

One bad input never stops the others: it is reported, counted, and the command exits 1. Under
torchrun each rank predicts its :class:`~eseg.inference.sharding.Shard` of the sorted inputs.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import fileio
from ..data.io import IMAGE_EXTENSIONS
from ..errors import ConfigError, DataError
from .pipeline import OrderedJobs, read_ahead, stop_at_error, stream
from .segmenter import Segmenter
from .sharding import Shard
from .video import VIDEO_EXTENSIONS, VideoWriter, is_video, read_video

MASK_DIR, COLOR_DIR, OVERLAY_DIR, PROB_DIR = "masks", "color", "overlay", "probs"
LEGEND_FILE = "legend.png"
SAVE_CHOICES = ("masks", "color", "overlay", "probs")
DEFAULT_SAVE = ("masks", "color", "overlay")
OUTPUT_PNG_LEVEL = 1  # zlib level of masks and colour masks: measured in docs/benchmark.md
OVERLAY_SUFFIX, OVERLAY_JPEG_QUALITY = ".jpg", 90


def collect_sources(source: str | Path) -> list[tuple[Path, Path]]:
    """(file, output stem relative to --out) for one file, a folder (recursive) or a glob. Stems
    keep the path below the folder; files that share one (photo.png and photo.jpg) keep their
    extension too (photo.png.png, photo.jpg.png), so no output replaces another."""
    import glob

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
    return unique_stems([(f, f.relative_to(root)) for f in files])


def unique_stems(items: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """(file, relative path) -> (file, output stem): the path without its suffix, or with it
    where two files would otherwise share a stem."""
    counts: dict[Path, int] = {}
    for _, rel in items:
        counts[rel.with_suffix("")] = counts.get(rel.with_suffix(""), 0) + 1
    return [(f, rel.with_suffix("") if counts[rel.with_suffix("")] == 1 else rel) for f, rel in items]


def parse_save(text: str | Iterable[str], *, probs: bool = False) -> tuple[str, ...]:
    """``"masks,color"`` (or a list of names) -> the outputs in :data:`SAVE_CHOICES` order;
    ``probs`` adds probabilities (``--save-probs``)."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in SAVE_CHOICES]
    if unknown or not names:
        raise ConfigError(f"--save '{text if isinstance(text, str) else ','.join(names)}': name one or more of "
                          f"{', '.join(SAVE_CHOICES)}, comma-separated (e.g. --save masks,color)")
    return tuple(n for n in SAVE_CHOICES if n in names or (probs and n == "probs"))


def output_paths(out_dir: Path, stem: Path, *, video: bool, save: Iterable[str] = DEFAULT_SAVE) -> dict[str, Path]:
    """Where each chosen output of one input goes."""
    if video:  # per-frame masks, when asked for, go to masks/<stem>/<frame>.png
        paths = {"color": out_dir / COLOR_DIR / f"{stem}.mp4", "overlay": out_dir / OVERLAY_DIR / f"{stem}.mp4"}
    else:
        paths = {"masks": out_dir / MASK_DIR / f"{stem}.png", "color": out_dir / COLOR_DIR / f"{stem}.png",
                 "overlay": out_dir / OVERLAY_DIR / f"{stem}{OVERLAY_SUFFIX}",
                 "probs": out_dir / PROB_DIR / f"{stem}.npy"}
    return {kind: path for kind, path in paths.items() if kind in save}


def save_npy(path: Path, array: np.ndarray) -> None:
    with fileio.atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def save_jpeg(path: Path, image: np.ndarray, quality: int = OVERLAY_JPEG_QUALITY) -> None:
    from PIL import Image

    with fileio.atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="JPEG", quality=quality)


def write_mask(path: Path, mask: np.ndarray) -> None:
    fileio.write_png(path, mask if mask.dtype == np.uint8 else mask.astype(np.uint16), compress_level=OUTPUT_PNG_LEVEL)


@dataclass(frozen=True)
class Look:
    """How colour masks and overlays are drawn."""

    palette: np.ndarray
    alpha: float = 0.5


def write_image_outputs(look: Look, image: np.ndarray, mask: np.ndarray, logits, paths: dict[str, Path]) -> None:
    """One image's outputs (a job on the write threads): each is computed only when chosen."""
    from ..viz import overlay, save_color_mask

    if "masks" in paths:
        write_mask(paths["masks"], mask)
    if "color" in paths:
        save_color_mask(mask, look.palette, paths["color"], compress_level=OUTPUT_PNG_LEVEL)
    if "overlay" in paths:
        save_jpeg(paths["overlay"], overlay(image, mask, look.palette, alpha=look.alpha))
    if "probs" in paths:
        save_npy(paths["probs"], torch.softmax(logits.float(), dim=0).cpu().numpy().astype(np.float32))


class Predictor:
    """Runs ``eseg predict``: one Segmenter, one look, one output folder, one choice of outputs."""

    def __init__(self, segmenter: Segmenter, out_dir: Path, *, palette: np.ndarray, alpha: float = 0.5,
                 save: Iterable[str] = DEFAULT_SAVE, save_probs: bool = False, save_frames: bool = False,
                 workers: int | None = None) -> None:
        self.segmenter = segmenter
        self.out_dir = out_dir
        self.look = Look(palette, alpha)
        self.save = parse_save(list(save), probs=save_probs)
        self.save_frames = save_frames
        self.workers = workers
        self.failures: list[tuple[Path, str]] = []
        self.successes = 0
        self.total = 0
        self.seconds = 0.0  # from the first input read to the last output written (start-up apart)
        self.bar = None

    def _fail(self, path: Path, exc: BaseException) -> None:
        message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        self.failures.append((path, message))
        (self.bar.write if self.bar is not None else print)(f"warning: skipped {message}", file=sys.stderr)

    def _advance(self, count: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def _written(self, path: Path, error: BaseException | None) -> None:
        if error is None:
            self.successes += 1
        else:
            self._fail(path, error)
        self._advance()

    def run_images(self, items: list[tuple[Path, Path]]) -> None:
        """Every image, decoded ahead of the network and written behind it."""
        with OrderedJobs(self._written, workers=self.workers) as queue:
            for result in stream(self.segmenter, [path for path, _ in items], logits="probs" in self.save,
                                 workers=self.workers):
                path, stem = items[result.index]
                if result.error is not None:
                    self._fail(path, result.error)
                    self._advance()
                    continue
                paths = output_paths(self.out_dir, stem, video=False, save=self.save)
                queue.submit(path, write_image_outputs, self.look, result.image, result.mask, result.logits, paths)

    def run_video(self, path: Path, stem: Path) -> None:
        """Colour and overlay videos (and per-frame masks with ``save_frames``): a decode thread,
        the network here, an encode thread; the progress bar counts frames. A broken stream is
        reported and the other inputs go on."""
        paths = output_paths(self.out_dir, stem, video=True, save=self.save)
        writers: dict[str, VideoWriter] = {}
        ok = False
        try:
            fps, _, frames = read_video(path)
            writers = {kind: VideoWriter(target, fps) for kind, target in paths.items()}
            if self._write_frames(read_ahead(frames, 2 * self.segmenter.batch_size), writers, stem) == 0:
                raise DataError(f"{path}: the video has no frames")
            ok = True
            self.successes += 1
        except (DataError, OSError, RuntimeError) as exc:
            self._fail(path, exc if isinstance(exc, DataError) else DataError(f"{path}: cannot read video ({exc})"))
        finally:
            for writer in writers.values():
                writer.close(ok)

    def _write_frames(self, frames, writers: dict[str, VideoWriter], stem: Path) -> int:
        count = 0
        with OrderedJobs(stop_at_error, workers=1, depth=2 * self.segmenter.batch_size) as queue:
            for result in stream(self.segmenter, frames, decode=np.asarray, workers=self.workers):
                frame_png = self.out_dir / MASK_DIR / stem / f"{count:06d}.png" if self.save_frames else None
                queue.submit(None, self._write_frame, writers, result.image, result.mask, frame_png)
                count += 1
                self._advance()
        return count

    def _write_frame(self, writers: dict[str, VideoWriter], frame: np.ndarray, mask: np.ndarray,
                     frame_png: Path | None) -> None:
        from ..viz import colorize, overlay

        if "color" in writers:
            writers["color"].append(colorize(mask, self.look.palette))
        if "overlay" in writers:
            writers["overlay"].append(overlay(frame, mask, self.look.palette, alpha=self.look.alpha))
        if frame_png is not None:
            write_mask(frame_png, mask)


def outputs_in_the_way(sources: list[tuple[Path, Path]], out_dir: Path, save: Iterable[str]) -> str | None:
    """A message naming the first output file that already exists, or None."""
    planned = [p for path, stem in sources for p in output_paths(out_dir, stem, video=is_video(path), save=save).values()]
    existing = [p for p in planned if p.exists()]
    if existing:
        return (f"{len(existing)} output file(s) already exist, e.g. '{existing[0]}'; "
                "pass --overwrite to replace them or choose another --out")
    return None


def check_outputs_free(sources: list[tuple[Path, Path]], out_dir: Path, *, save: Iterable[str] = DEFAULT_SAVE) -> None:
    """ConfigError naming the first output file that already exists."""
    problem = outputs_in_the_way(sources, out_dir, save)
    if problem:
        raise ConfigError(problem)


def check_videos_have_outputs(sources: list[tuple[Path, Path]], save: tuple[str, ...], save_frames: bool) -> None:
    if not save_frames and not {"color", "overlay"} & set(save) and any(is_video(p) for p, _ in sources):
        raise ConfigError(f"--save {','.join(save)} writes nothing for a video: its outputs are colour and overlay "
                          "videos (--save color,overlay) and per-frame masks (--save-frames)")


def predict_sources(segmenter: Segmenter, source: str | Path, out_dir: str | Path, *, palette: np.ndarray,
                    class_names: list[str], alpha: float = 0.5, save: Iterable[str] = DEFAULT_SAVE,
                    save_probs: bool = False, save_frames: bool = False, overwrite: bool = False,
                    progress: bool = True, shard: Shard | None = None, workers: int | None = None) -> Predictor:
    """Predict every image and video ``source`` names (this rank's ``shard`` of them) into
    ``out_dir``; returns the Predictor, whose ``successes`` and ``failures`` say how it went."""
    from ..viz import legend

    shard = shard or Shard()
    out_dir = Path(out_dir)
    predictor = Predictor(segmenter, out_dir, palette=palette, alpha=alpha, save=save, save_probs=save_probs,
                          save_frames=save_frames, workers=workers)
    sources = shard.take(collect_sources(source))
    check_videos_have_outputs(sources, predictor.save, save_frames)
    problem = shard.first_problem(None if overwrite else outputs_in_the_way(sources, out_dir, predictor.save))
    if problem:
        raise ConfigError(problem)
    predictor.total = len(sources)
    if shard.is_main and (overwrite or not (out_dir / LEGEND_FILE).exists()):  # one model, one legend
        fileio.write_png(out_dir / LEGEND_FILE, legend(class_names, palette))
    images = [(p, s) for p, s in sources if not is_video(p)]
    videos = [(p, s) for p, s in sources if is_video(p)]
    predictor.bar = progress_bar(images, videos) if progress else None
    start = time.perf_counter()
    try:
        predictor.run_images(images)
        for path, stem in videos:
            predictor.run_video(path, stem)
    finally:
        predictor.seconds = time.perf_counter() - start
        if predictor.bar is not None:
            predictor.bar.close()
    order = {path: number for number, (path, _) in enumerate(sources)}
    predictor.failures.sort(key=lambda failure: order.get(failure[0], -1))  # input order, whatever finished first
    return predictor


def progress_bar(images: list, videos: list):
    """One bar over every image and every video frame (a video whose length is unknown adds
    its frames as they come)."""
    from tqdm import tqdm

    frames = sum(known_frame_count(path) for path, _ in videos)
    unit = "frame" if videos else "img"
    return tqdm(total=len(images) + frames, desc="predict", unit=unit, dynamic_ncols=True, file=sys.stderr)


def known_frame_count(path: Path) -> int:
    """The frames the video's header announces; 0 when it gives none or cannot be read (that
    failure is reported when the video itself is read)."""
    try:
        return read_video(path)[1] or 0
    except (DataError, ConfigError):
        return 0

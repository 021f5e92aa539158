"""``eseg predict`` as a library: sources in, masks, colour masks, overlays and a legend out.

One bad input never stops the others: it is reported, counted, and the command exits 1.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .. import fileio
from ..data.io import IMAGE_EXTENSIONS, as_rgb
from ..data.transforms import normalize
from ..errors import ConfigError, DataError
from .segmenter import Segmenter
from .video import VIDEO_EXTENSIONS, VideoWriter, is_video, read_video

MASK_DIR, COLOR_DIR, OVERLAY_DIR, PROB_DIR = "masks", "color", "overlay", "probs"
LEGEND_FILE = "legend.png"


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


def output_paths(out_dir: Path, stem: Path, *, video: bool, save_probs: bool) -> dict[str, Path]:
    if video:  # per-frame masks, when asked for, go to masks/<stem>/<frame>.png
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


class Predictor:
    """Runs ``eseg predict``: one Segmenter, one palette, one output folder."""

    def __init__(self, segmenter: Segmenter, out_dir: Path, *, palette: np.ndarray,
                 alpha: float = 0.5, save_probs: bool = False, save_frames: bool = False) -> None:
        self.segmenter = segmenter
        self.out_dir = out_dir
        self.palette = palette
        self.alpha = alpha
        self.save_probs = save_probs
        self.save_frames = save_frames
        self.failures: list[tuple[Path, str]] = []
        self.successes = 0
        self.total = 0

    def _fail(self, path: Path, exc: BaseException, bar) -> None:
        message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
        self.failures.append((path, message))
        (bar.write if bar is not None else print)(f"warning: skipped {message}", file=sys.stderr)

    def write_image_outputs(self, image: np.ndarray, logits: torch.Tensor, paths: dict[str, Path]) -> None:
        from ..viz import colorize, overlay

        mask = self.segmenter.to_mask(logits)
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
                    loaded.append((path, stem, as_rgb(path)))
                except (DataError, OSError) as exc:
                    self._fail(path, exc, bar)
                    if bar is not None:
                        bar.update(1)
            if loaded:
                tensors = [normalize(image, self.segmenter.info.mean, self.segmenter.info.std) for _, _, image in loaded]
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
        """Colour and overlay videos (and per-frame masks with ``save_frames``); the progress bar
        counts frames. A broken stream is reported and the other inputs go on."""
        paths = output_paths(self.out_dir, stem, video=True, save_probs=False)
        writers: list[VideoWriter] = []
        ok = False
        try:
            fps, _, frames = read_video(path)
            writers = [VideoWriter(paths["color"], fps), VideoWriter(paths["overlay"], fps)]
            if self._write_frames(frames, writers, stem, bar) == 0:
                raise DataError(f"{path}: the video has no frames")
            ok = True
            self.successes += 1
        except (DataError, OSError, RuntimeError) as exc:
            self._fail(path, exc if isinstance(exc, DataError) else DataError(f"{path}: cannot read video ({exc})"), bar)
        finally:
            for writer in writers:
                writer.close(ok)

    def _write_frames(self, frames, writers: list[VideoWriter], stem: Path, bar) -> int:
        from ..viz import colorize, overlay

        count = 0
        for batch in _chunks(frames, self.segmenter.batch_size):
            for frame, mask in zip(batch, self.segmenter.predict_batch(batch)):
                writers[0].append(colorize(mask, self.palette))
                writers[1].append(overlay(frame, mask, self.palette, alpha=self.alpha))
                if self.save_frames:
                    fileio.write_png(self.out_dir / MASK_DIR / stem / f"{count:06d}.png",
                                     mask if mask.dtype == np.uint8 else mask.astype(np.uint16))
                count += 1
            if bar is not None:
                bar.update(len(batch))
        return count


def _chunks(items, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_outputs_free(sources: list[tuple[Path, Path]], out_dir: Path, *, save_probs: bool) -> None:
    """ConfigError naming the first output file that already exists."""
    planned = [p for path, stem in sources
               for p in output_paths(out_dir, stem, video=is_video(path), save_probs=save_probs).values()]
    existing = [p for p in planned if p.exists()]
    if existing:
        raise ConfigError(f"{len(existing)} output file(s) already exist, e.g. '{existing[0]}'; "
                          "pass --overwrite to replace them or choose another --out")


def predict_sources(segmenter: Segmenter, source: str | Path, out_dir: str | Path, *, palette: np.ndarray,
                    class_names: list[str], alpha: float = 0.5, save_probs: bool = False, save_frames: bool = False,
                    overwrite: bool = False, progress: bool = True) -> Predictor:
    """Predict every image and video ``source`` names into ``out_dir``; returns the Predictor,
    whose ``successes`` and ``failures`` say how it went."""
    from ..viz import legend

    sources = collect_sources(source)
    out_dir = Path(out_dir)
    if not overwrite:
        check_outputs_free(sources, out_dir, save_probs=save_probs)
    predictor = Predictor(segmenter, out_dir, palette=palette, alpha=alpha, save_probs=save_probs,
                          save_frames=save_frames)
    predictor.total = len(sources)
    if overwrite or not (out_dir / LEGEND_FILE).exists():  # the same model gives the same legend
        fileio.write_png(out_dir / LEGEND_FILE, legend(class_names, palette))
    images = [(p, s) for p, s in sources if not is_video(p)]
    videos = [(p, s) for p, s in sources if is_video(p)]
    bar = progress_bar(images, videos) if progress else None
    try:
        predictor.run_images(images, bar)
        for path, stem in videos:
            predictor.run_video(path, stem, bar)
    finally:
        if bar is not None:
            bar.close()
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

"""Video in and out for predict: decoded through imageio.v3, encoded by the ffmpeg that
imageio-ffmpeg ships (the ``video`` extra)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .. import fileio
from ..errors import DataError
from ..imports import require

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _ffmpeg():
    return require("imageio_ffmpeg", "video", "reading and writing video files")


def read_video(path: Path) -> tuple[float, int | None, Iterator[np.ndarray]]:
    """(fps, frame count or None when the container does not say, uint8 RGB frames), read
    through ``imageio.v3`` with its ffmpeg plugin (imageio-ffmpeg)."""
    import imageio.v3 as iio

    _ffmpeg()  # the plugin's binary, with a clear message when the extra is missing
    try:
        meta = iio.immeta(path, plugin="FFMPEG")
    except (OSError, RuntimeError, IndexError, StopIteration) as exc:
        raise DataError(f"{path}: cannot open video ({_last_line(exc)})") from exc
    fps = float(meta.get("fps") or 25.0)
    frames = meta.get("nframes")
    if not isinstance(frames, int) or frames <= 0:
        duration = meta.get("duration")
        frames = round(duration * fps) if isinstance(duration, (int, float)) and duration > 0 else None

    def decoded() -> Iterator[np.ndarray]:
        try:
            for frame in iio.imiter(path, plugin="FFMPEG"):
                yield np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
        except (OSError, RuntimeError) as exc:
            raise DataError(f"{path}: cannot decode video ({_last_line(exc)})") from exc

    return fps, frames, decoded()


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


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

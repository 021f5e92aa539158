"""Video in and out for predict: frames decoded and encoded by the ffmpeg that imageio-ffmpeg ships."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .. import fileio
from ..errors import ConfigError, DataError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


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

"""Inference: the Segmenter (whole, sliding window, TTA) and ``eseg predict`` as a library.

``Segmenter`` is imported on first use, so the modes can be listed without torch.
"""
from __future__ import annotations

from typing import Any

from .modes import DEFAULT_TTA_SCALES, MODES

__all__ = ["DEFAULT_TTA_SCALES", "MODES", "Segmenter"]


def __getattr__(name: str) -> Any:
    if name == "Segmenter":
        from .segmenter import Segmenter

        return Segmenter
    raise AttributeError(f"module 'eseg.inference' has no attribute '{name}'")

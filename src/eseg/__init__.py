"""eseg: ESeg semantic segmentation (Meng et al., arXiv 2203.12683) on timm backbones.

Public names are imported on first use, so ``import eseg`` (and ``eseg --help``) stays fast and
torch-free until a model, dataset or Segmenter is needed.
"""
from __future__ import annotations

from typing import Any

from .imports import lazy_attribute

__version__ = "0.2.0"

_EXPORTS = {
    "Segmenter": "eseg.inference.segmenter",
    "SegmentationModel": "eseg.models.base", "load_model": "eseg.models.base",
    "ESeg": "eseg.models.eseg.model", "ESegConfig": "eseg.models.eseg.config",
    "DeepLabV3Plus": "eseg.models.deeplab.model", "DeepLabV3PlusConfig": "eseg.models.deeplab.config",
    "create_model": "eseg.models.registry", "get_config": "eseg.models.registry", "list_models": "eseg.models.registry",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:  # subpackages by attribute too, e.g. eseg.palette, eseg.data
    return lazy_attribute("eseg", _EXPORTS, name)

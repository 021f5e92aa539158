"""eseg's architectures (ESeg, the DeepLabV3+ baseline) on one base, with one registry.

Names are imported lazily, so ``eseg.models.list_models()`` and the registries stay torch-free.
"""
from __future__ import annotations

from typing import Any

from ..imports import lazy_attribute

_EXPORTS = {
    "SegmentationModel": "eseg.models.base", "load_model": "eseg.models.base",
    "ModelConfig": "eseg.models.config",
    "ESeg": "eseg.models.eseg.model", "ESegConfig": "eseg.models.eseg.config",
    "DeepLabV3Plus": "eseg.models.deeplab.model", "DeepLabV3PlusConfig": "eseg.models.deeplab.config",
    "ARCHITECTURES": "eseg.models.registry", "MODELS": "eseg.models.registry", "create_model": "eseg.models.registry",
    "get_config": "eseg.models.registry", "list_models": "eseg.models.registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    return lazy_attribute("eseg.models", _EXPORTS, name)

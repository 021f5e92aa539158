"""Building the benchmarked models: eseg's registered models and the peers, randomly initialised,
and trained models named by their path (:mod:`.trained`), in eval mode, each returning
(N, C, H, W) logits."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .peers import PEERS


class OutputTensor(nn.Module):
    """torchvision segmentation models return {'out': logits}; the benchmark wants the tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def torchvision_peer(name: str, *, num_classes: int, encoder: str) -> nn.Module:
    import torchvision.models.segmentation as tvs

    kwargs = {"aux_loss": False} if name != "lraspp_mobilenet_v3_large" else {}
    return OutputTensor(getattr(tvs, name)(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs))


def smp_peer(name: str, *, num_classes: int, encoder: str) -> nn.Module:
    try:
        import segmentation_models_pytorch as smp
    except ImportError as exc:
        raise ConfigError(f"'{name}' needs segmentation_models_pytorch: pip install segmentation-models-pytorch ({exc})") from exc
    model_class = getattr(smp, PEERS.metadata(name)["smp_class"])
    return model_class(encoder_name=f"tu-{encoder}", encoder_weights=None, classes=num_classes)


def build_model(name: str, *, num_classes: int = 19, encoder: str = "tf_efficientnet_lite0",
                model_options: dict | None = None) -> nn.Module:
    """A model in eval mode: a registered eseg model or a peer, randomly initialised, or a trained
    model named by its path (:mod:`.trained`). ``encoder`` is the timm backbone of the smp peers
    (``tu-<encoder>``); ``num_classes`` and ``model_options`` change the registered eseg models'
    config (a trained model keeps its own)."""
    from ..models.registry import MODELS, create_model
    from .trained import is_model_path, load_trained

    if name in MODELS:
        return create_model(name, num_classes=num_classes, **(model_options or {})).eval()
    if is_model_path(name):
        return load_trained(name)
    return PEERS.get(name)(name, num_classes=num_classes, encoder=encoder).eval()

"""Building the benchmarked models: eseg's registered models and the peers, randomly initialised,
and trained models named by their path (:mod:`.trained`), in eval mode, each returning
(N, C, H, W) logits; and each peer's low-resolution form (:func:`peer_lowres`: the same network
without its last bilinear upsample, for ``eseg benchmark --end-to-end``)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


def build_or_skip(name: str, *, num_classes: int, encoder: str, model_options: dict, skipped: dict[str, str],
                  log: Callable[[str], None]) -> nn.Module | None:
    """:func:`build_model`, except that an smp peer whose optional extra is missing is recorded in
    ``skipped`` (and logged) and gives None: the benchmark goes on with the others."""
    try:
        return build_model(name, num_classes=num_classes, encoder=encoder, model_options=model_options)
    except ConfigError as exc:
        if name not in PEERS or PEERS.metadata(name)["source"] != "smp":
            raise
        skipped[name] = str(exc)
        log(f"skipping {name}: {exc}")
        return None


@dataclass(frozen=True)
class LowResolutionPeer:
    """A peer's network without its last bilinear upsample: ``module`` returns the logits that
    upsample takes, and ``align_corners`` is the one it uses, so the exact low-resolution argmax
    (:func:`eseg.inference.lowres.lowres_argmax`) gives the mask its native output gives."""

    module: nn.Module
    align_corners: bool


class TorchvisionLowRes(nn.Module):
    """torchvision's segmentation models end with ``F.interpolate(out, size=input.shape[-2:],
    mode="bilinear", align_corners=False)`` (LRASPP from stride 8, DeepLabV3 and FCN from their
    output stride): this returns ``out``, sharing the model's weights."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.models.segmentation.lraspp import LRASPP

        features = self.model.backbone(x)
        return self.model.classifier(features if isinstance(self.model, LRASPP) else features["out"])


class SmpLowRes(nn.Module):
    """smp's models end with a ``SegmentationHead``: a conv, ``nn.Upsample(mode="bilinear",
    align_corners=True)`` by ``upsampling`` (4 for DeepLabV3+ and FPN), an activation: this
    returns the conv's output, sharing the model's weights."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.jit.is_scripting()):
            self.model.check_input_shape(x)  # smp refuses sizes its output stride does not divide
        return self.model.segmentation_head[0](self.model.decoder(self.model.encoder(x)))


def peer_lowres(name: str, model: nn.Module) -> LowResolutionPeer | None:
    """The low-resolution form of the peer ``model`` (built by :func:`build_model` for ``name``),
    or None when its output is not one bilinear upsample of low-resolution logits."""
    source = PEERS.metadata(name)["source"] if name in PEERS else None
    if source == "torchvision" and isinstance(model, OutputTensor):
        return LowResolutionPeer(TorchvisionLowRes(model.model), align_corners=False)
    head = getattr(model, "segmentation_head", None)
    if source == "smp" and head is not None and len(head) == 3:
        upsample, activation = head[1], head[2]
        bilinear = isinstance(upsample, nn.Upsample) and upsample.mode == "bilinear"
        if bilinear and isinstance(getattr(activation, "activation", activation), nn.Identity):
            return LowResolutionPeer(SmpLowRes(model), align_corners=bool(upsample.align_corners))
    return None

"""The peer models the benchmark builds beside eseg's own (torch-free names and builders)."""
from __future__ import annotations

import warnings

from ..registry import Registry

PEERS: Registry = Registry("benchmark peer")
PEERS.register("lraspp_mobilenet_v3_large", "eseg.benchmark.models:torchvision_peer", source="torchvision")
PEERS.register("deeplabv3_mobilenet_v3_large", "eseg.benchmark.models:torchvision_peer", source="torchvision")
PEERS.register("fcn_resnet50", "eseg.benchmark.models:torchvision_peer", source="torchvision")
PEERS.register("smp_deeplabv3plus", "eseg.benchmark.models:smp_peer", source="smp", smp_class="DeepLabV3Plus")
PEERS.register("smp_fpn", "eseg.benchmark.models:smp_peer", source="smp", smp_class="FPN")

DEFAULT_MODELS = ("eseg_lite_s", "lraspp_mobilenet_v3_large", "smp_deeplabv3plus")


def benchmark_models() -> list[str]:
    """Every name ``--models`` accepts: registered eseg models, then the peers."""
    from ..models.registry import list_models

    return list_models() + PEERS.names()


def __getattr__(name: str):
    if name == "BACKENDS":  # the variants' names lived here, in a tuple that mixed them with runtimes
        warnings.warn("eseg.benchmark.peers.BACKENDS moved: use eseg.benchmark.variants.variant_names()",
                      DeprecationWarning, stacklevel=2)
        from .variants import variant_names

        return tuple(variant_names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""What the benchmark compares a model across: its *variants* (torch-free).

A variant is one way to run a model: a runtime of :mod:`eseg.runtimes` (``torch``,
``onnxruntime``, ``openvino``) with that runtime's options. ``eager``, ``channels_last`` and
``compile`` are three variants of the one torch runtime (:class:`~eseg.runtimes.torch.TorchRunner`
with its ``channels_last`` / ``compile`` options); ``onnxruntime`` and ``openvino`` run the
fixed-size ONNX graph. The precision each runs in is decided when it is prepared
(:func:`eseg.benchmark.prepare.prepare_variant`) and reported beside every figure. On the command
line they are ``--backends``, and ``backend`` in the results, as they always were.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry


@dataclass(frozen=True)
class Variant:
    """A runtime (a name of :data:`eseg.runtimes.BACKENDS`) and the options it runs with."""

    name: str
    runtime: str
    channels_last: bool = False
    compile: bool = False

    @property
    def runs_a_graph(self) -> bool:
        """Whether it runs the exported ONNX graph rather than the PyTorch module."""
        return self.runtime != "torch"


VARIANTS: Registry[Variant] = Registry("benchmark variant")
for _variant in (
    Variant("eager", "torch"),
    Variant("channels_last", "torch", channels_last=True),
    Variant("compile", "torch", compile=True),
    Variant("onnxruntime", "onnxruntime"),
    Variant("openvino", "openvino"),
):
    VARIANTS.register(_variant.name, _variant)
del _variant


def variant_names() -> list[str]:
    """Every variant, in the order the command line lists them."""
    return VARIANTS.find(lambda name, meta: True)

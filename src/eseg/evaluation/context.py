"""The one evaluation context: a model in eval mode for the length of a ``with`` block.

detectron2's ``inference_context`` restores ``model.train(was_training)``; this restores the mode
of every submodule as it was, so layers the owner keeps in eval mode inside a training model
(frozen batch norm, see :meth:`eseg.models.base.SegmentationModel.freeze_batchnorm`) stay so.
Nothing else of the model is touched: a runner that needs another device or memory format works
on its own copy (:class:`eseg.runtimes.torch.TorchRunner`).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


def _modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(module, module.training) for module in model.modules()]


def _restore(modes: list[tuple[nn.Module, bool]]) -> None:
    for module, training in modes:
        module.training = training  # the flag itself: a train() override must not re-interpret it


@contextmanager
def preserved_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Every submodule's train/eval flag put back on exit, whatever the block changed."""
    modes = _modes(model)
    try:
        yield model
    finally:
        _restore(modes)


@contextmanager
def inference_context(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; on exit every submodule's mode is as it was.
    A model wholly in eval mode already is not changed at all (a cheap check per runner call)."""
    modes = _modes(model)
    if not any(training for _, training in modes):
        yield model
        return
    try:
        model.eval()
        yield model
    finally:
        _restore(modes)

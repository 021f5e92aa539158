"""Bias-corrected BatchNorm running statistics (``debias_batchnorm``), and the layer-level tools
the rest of eseg uses on BN: :func:`batchnorm_layers`, :func:`set_bn_momentum`. Precise BN and the
DDP averaging of the statistics are the trainer's (:mod:`eseg.engine.bn`); frozen BN is the
model's own ``train()`` (:meth:`eseg.models.base.SegmentationModel.freeze_batchnorm`).

Why. PyTorch's BN updates ``running = (1 - m) * running + m * batch_stat`` starting from
``running_mean = 0`` and ``running_var = 1``. After ``t`` updates the initial values still carry a
weight of ``(1 - m)**t``: with EfficientDet's m = 0.01 that is 0.99**150 = 22 % after 150 steps
and 0.99**250 = 8 % after 250. Where the true variance is far from 1 this dominates: a BiFPN node
BN whose inputs have variance ~0.035 reports 0.22 * 1 + 0.78 * 0.035 ~ 0.25 after 150 steps, 7x
too large, so in eval mode it shrinks its output ~2.7x, and 28 such layers sit in series on the
longest path from the backbone to the logits (measured in ``benchmarks/bn_root_cause.py``: running-BN mIoU 13 %
against 64 % after precise BN, and 64 % with this correction).

The fix, in the spirit of Adam's bias correction: the update factor at the t-th update
(t = ``num_batches_tracked`` after its increment) is ``max(m, min(1, HORIZON / t))``. The first
update replaces the initial 0 / 1 outright, so the statistics are unbiased from the first step;
until ``HORIZON / m`` updates they average roughly the latest t / HORIZON batches, so they follow
the weights while those still move fast; after that they are the usual EMA with the layer's own
momentum, so a long schedule converges to what it always did. ``HORIZON = 1`` would be the plain
cumulative average (PyTorch's ``momentum=None``) until 1/m updates; measured, its equal weight on
the first steps' statistics leaves a short run's eval mIoU up to 3 points off precise BN (the plain
FPN at 150 steps), against 1.3 with ``HORIZON = 5`` (docs/models.md).

How. A forward pre-hook sets ``module.momentum`` to the effective factor for the duration of one
training-mode forward, and a forward hook puts the long-run value back, so outside a forward
``module.momentum`` always holds the long-run momentum: the trainer's ``train.bn_momentum``
override, precise BN (:mod:`eseg.engine.bn`, momentum None, as ``torch.optim.swa_utils.update_bn``)
and :func:`set_bn_momentum` keep working unchanged. ``num_batches_tracked`` is in the state dict, so a resumed run continues the
schedule exactly. Eval mode, ONNX export, tracing and ``torch.compile`` of an eval model see hooks
that return at once. The hooks are plain module-level functions, so ``copy.deepcopy`` (the weight
EMA) and pickling keep them. The hook reads ``num_batches_tracked`` (a device sync on CUDA) only
during the first HORIZON/m updates; after that it is a no-op (``torch.compile`` of a training step
gives the same statistics, with a graph break in each BN's hook during those updates). Apply it
after ``nn.SyncBatchNorm.convert_sync_batchnorm``, which builds new modules without hooks;
:func:`remove_debias` undoes it (``torch.jit.script`` cannot compile the hooks).
"""
from __future__ import annotations

from collections.abc import Iterator

from torch import nn

_BatchNorm = nn.modules.batchnorm._BatchNorm

# Per-module attributes (plain Python, copied by deepcopy, not part of the state dict).
_LONG_RUN = "_eseg_bn_long_run"  # long-run momentum, stashed during one forward only
_STEADY_FOR = "_eseg_bn_steady_for"  # momentum for which HORIZON/t <= m already holds
_UNSET = object()
HORIZON = 5  # early on, the running statistics average about the latest t / HORIZON batches


def effective_momentum(momentum: float, step: int) -> float:
    """The update factor of the ``step``-th update (1-based): ``max(momentum, min(1, HORIZON/step))``."""
    if step < 1:
        raise ValueError(f"step counts updates from 1, got {step}")
    return max(float(momentum), min(1.0, HORIZON / step))


def batchnorm_layers(model: nn.Module) -> Iterator[tuple[str, _BatchNorm]]:
    """Every BN layer (any ``_BatchNorm``: BatchNorm1/2/3d, SyncBatchNorm, timm's BatchNormAct2d)."""
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm):
            yield name, module


def _debias_pre_hook(module: _BatchNorm, args) -> None:
    if not module.training or not module.track_running_stats or module.num_batches_tracked is None:
        return
    momentum = module.momentum
    if momentum is None:  # already cumulative (e.g. update_bn); counters may be reset
        module.__dict__.pop(_STEADY_FOR, None)
        return
    if module.__dict__.get(_STEADY_FOR) == momentum:
        return
    step = int(module.num_batches_tracked) + 1  # BN's forward increments it right after this hook
    factor = effective_momentum(momentum, step)
    if factor == momentum:
        module.__dict__[_STEADY_FOR] = momentum  # from now on HORIZON/t <= m: no more reads
        return
    module.__dict__[_LONG_RUN] = momentum
    module.momentum = factor


def _debias_post_hook(module: _BatchNorm, args, output) -> None:
    long_run = module.__dict__.pop(_LONG_RUN, _UNSET)
    if long_run is not _UNSET:
        module.momentum = long_run


def _reset_steady(module: _BatchNorm, incompatible_keys) -> None:
    """A loaded ``num_batches_tracked`` may be smaller: check it again at the next forward."""
    module.__dict__.pop(_STEADY_FOR, None)


def is_debiased(module: nn.Module) -> bool:
    return _debias_pre_hook in module._forward_pre_hooks.values()


def debias_batchnorm(model: nn.Module) -> nn.Module:
    """Bias-correct the running statistics of every BN layer of ``model`` (in place; returned).

    In training mode the t-th update of a layer with momentum m uses the factor
    max(m, min(1, HORIZON/t)): the latest t/HORIZON batches at first, then the EMA with m from
    update HORIZON/m on (see the module doc).
    Layers with ``momentum=None`` are already cumulative and stay so; layers that do not track
    running statistics are untouched. Idempotent: applying it again adds no second hook, and also
    re-checks ``num_batches_tracked`` (do so after resetting statistics by hand).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"debias_batchnorm expects an nn.Module, got {type(model).__name__}")
    for _, module in batchnorm_layers(model):
        module.__dict__.pop(_STEADY_FOR, None)
        if is_debiased(module):
            continue
        module.register_forward_pre_hook(_debias_pre_hook)
        module.register_forward_hook(_debias_post_hook, always_call=True)
        module.register_load_state_dict_post_hook(_reset_steady)
    return model


def remove_debias(model: nn.Module) -> nn.Module:
    """Undo :func:`debias_batchnorm` (in place; returned): PyTorch's plain EMA again, e.g. to
    reproduce it, or before ``torch.jit.script``, which cannot compile these hooks."""
    for _, module in batchnorm_layers(model):
        for hooks, fn in ((module._forward_pre_hooks, _debias_pre_hook), (module._forward_hooks, _debias_post_hook),
                          (module._load_state_dict_post_hooks, _reset_steady)):
            for key in [k for k, v in hooks.items() if v is fn]:
                del hooks[key]
                module._forward_hooks_always_called.pop(key, None)
        module.__dict__.pop(_STEADY_FOR, None)
    return model


def get_bn_momentum(model: nn.Module) -> dict[str, float | None]:
    """The long-run momentum of every BN layer, by module name."""
    return {name: module.__dict__.get(_LONG_RUN, module.momentum) for name, module in batchnorm_layers(model)}


def set_bn_momentum(model: nn.Module, momentum: float | None) -> int:
    """Set the long-run momentum of every BN layer (None: cumulative average); returns the count.

    Setting ``module.momentum`` directly does the same; the debias hooks follow either.
    """
    if momentum is not None and not (isinstance(momentum, (int, float)) and 0.0 < momentum <= 1.0):
        raise ValueError(f"BN momentum must be in (0, 1] or None, got {momentum!r}")
    count = 0
    for _, module in batchnorm_layers(model):
        module.momentum = None if momentum is None else float(momentum)
        count += 1
    return count

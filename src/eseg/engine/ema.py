"""The weight EMA: timm's ``ModelEmaV3`` with eseg's decay ramp and train_state layout."""
from __future__ import annotations

import torch
from timm.utils.model_ema import ModelEmaV3
from torch import nn


class ModelEMA(ModelEmaV3):
    """Exponential moving average of a model's parameters and buffers (timm's ``ModelEmaV3``:
    floating tensors are interpolated, integer buffers such as BN's ``num_batches_tracked``
    copied). The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` at the n-th update, so the
    early random weights fade quickly. ``self.module`` is the averaged model, in eval mode."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model, decay=decay)
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.updates = 0

    def get_decay(self, step: int | None = None) -> float:
        """The decay of the ``step``-th update (default: the latest)."""
        n = self.updates if step is None else step
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        """Fold ``model`` in as the next update (``step`` is counted here; passing one is an error)."""
        if step is not None:
            raise TypeError("ModelEMA counts its own updates; call update(model)")
        self.updates += 1
        super().update(model, step=self.updates)

    def checkpoint_state(self) -> dict:
        """The EMA in ``train_state.pt``: ``{updates, decay, module}`` (the layout every eseg
        version has written)."""
        return {"updates": self.updates, "decay": self.decay, "module": self.module.state_dict()}

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore :meth:`checkpoint_state` (``decay`` stays this run's setting)."""
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["module"])
